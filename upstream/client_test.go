package upstream

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/regcache/regcache/oci"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantErr   bool
		wantName  string
		wantFirst string
	}{
		{"https", Config{Name: "docker.io", Endpoints: []string{"https://registry-1.docker.io"}}, false, "docker.io", "https://registry-1.docker.io"},
		{"trailing slashes", Config{Name: "x", Endpoints: []string{"http://127.0.0.1:5000//"}}, false, "x", "http://127.0.0.1:5000"},
		{"path prefix", Config{Name: "x", Endpoints: []string{"https://mirror.example/ghcr.io/"}}, false, "x", "https://mirror.example/ghcr.io"},
		{"name defaults to host", Config{Endpoints: []string{"https://ghcr.io"}}, false, "ghcr.io", "https://ghcr.io"},
		{"no endpoint", Config{Name: "x"}, true, "", ""},
		{"ftp", Config{Name: "x", Endpoints: []string{"ftp://host"}}, true, "", ""},
		{"no host", Config{Name: "x", Endpoints: []string{"https://"}}, true, "", ""},
		{"no scheme", Config{Name: "x", Endpoints: []string{"registry.example"}}, true, "", ""},
		{"query", Config{Name: "x", Endpoints: []string{"https://h/?a=b"}}, true, "", ""},
		{"empty query", Config{Name: "x", Endpoints: []string{"https://h/?"}}, true, "", ""},
		{"fragment", Config{Name: "x", Endpoints: []string{"https://h/#f"}}, true, "", ""},
		{"user info", Config{Name: "x", Endpoints: []string{"https://u:" + secret + "@h"}}, true, "", ""},
		{"second one bad", Config{Name: "x", Endpoints: []string{"https://h", "nope"}}, true, "", ""},
		{"unparsable", Config{Name: "x", Endpoints: []string{"http://[::1"}}, true, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.cfg, Options{})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("New(%+v) succeeded, want an error", tc.cfg)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("New error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v): %v", tc.cfg, err)
			}
			if c.Name() != tc.wantName {
				t.Errorf("Name() = %q, want %q", c.Name(), tc.wantName)
			}
			if h := c.Health(); h[0].URL != tc.wantFirst || !h[0].Healthy {
				t.Errorf("Health()[0] = %+v, want URL %q, healthy", h[0], tc.wantFirst)
			}
		})
	}
}

func TestRequestValidation(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("an invalid request reached the upstream: %s %s", r.Method, r.URL)
	}))
	defer srv.Close()
	c := mustNew(t, Config{Name: "x", Endpoints: []string{srv.URL}}, Options{})
	tests := []struct {
		name string
		req  Request
	}{
		{"PUT", Request{Method: http.MethodPut, Repository: "a", Path: "manifests/x"}},
		{"DELETE", Request{Method: http.MethodDelete, Repository: "a", Path: "manifests/x"}},
		{"no method", Request{Repository: "a", Path: "manifests/x"}},
		{"repository without path", Request{Method: http.MethodGet, Repository: "a"}},
		{"path without repository", Request{Method: http.MethodGet, Path: "manifests/x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if resp, err := c.Do(t.Context(), tc.req); err == nil {
				resp.Body.Close()
				t.Errorf("Do(%+v) succeeded, want an error", tc.req)
			}
		})
	}
}

func TestAnonymousTokenDance(t *testing.T) {
	f := newFakeHub(t)
	var ex exchanges
	c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}}, Options{OnResponse: ex.add})
	req := Request{Method: http.MethodGet, Repository: "library/alpine", Path: "manifests/latest"}
	for i := range 3 {
		if body, err := fetch(t, c, t.Context(), req); err != nil || body != manifestBody {
			t.Fatalf("request %d: %q, %v", i, body, err)
		}
	}
	if n := f.realmHits.Load(); n != 1 {
		t.Errorf("realm hits = %d, want 1 (token cached)", n)
	}
	q, user := f.lastRealm()
	want := url.Values{"service": {"fake"}, "scope": {"repository:library/alpine:pull"}}
	if !reflect.DeepEqual(q, want) || user != "" {
		t.Errorf("realm asked with %v by %q, want %v anonymously", q, user, want)
	}
	wantKinds := []string{"registry 401", "token 200", "registry 200", "registry 200", "registry 200"}
	if got := ex.kinds(); !reflect.DeepEqual(got, wantKinds) {
		t.Errorf("exchanges = %q, want %q", got, wantKinds)
	}
	if rl, ok := c.RateLimit(); !ok || rl.Limit != 100 || rl.Remaining != 99 || rl.Window != 6*time.Hour || rl.Seen.IsZero() {
		t.Errorf("RateLimit() = %+v, %v; want 100/99 per 6h", rl, ok)
	}
}

func TestPingSendsNoScope(t *testing.T) {
	f := newFakeHub(t)
	c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}}, Options{})
	if body, err := fetch(t, c, t.Context(), Request{Method: http.MethodGet}); err != nil || body != "{}" {
		t.Fatalf("GET /v2/: %q, %v", body, err)
	}
	q, _ := f.lastRealm()
	if q.Has("scope") || q.Get("service") != "fake" {
		t.Errorf("realm query for /v2/ = %v, want service only", q)
	}
	if _, ok := c.RateLimit(); ok {
		t.Errorf("RateLimit() reported a budget no answer carried")
	}
}

func TestRedirectNeverCarriesAuthorization(t *testing.T) {
	t.Run("bearer upstream to a CDN on the same IP, another port", func(t *testing.T) {
		f := newFakeHub(t)
		var ex exchanges
		c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}, Username: "alice", Password: secret},
			Options{OnResponse: ex.add})
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			body, err := fetch(t, c, t.Context(), Request{Method: method, Repository: "app", Path: "blobs/sha256:aa"})
			if err != nil {
				t.Fatalf("%s blob: %v", method, err)
			}
			if method == http.MethodGet && body != f.blob {
				t.Errorf("GET blob: %d bytes, want %d", len(body), len(f.blob))
			}
		}
		if n := f.cdnHits.Load(); n != 2 {
			t.Errorf("CDN hits = %d, want 2", n)
		}
		want := []string{"registry 401", "token 200", "registry 307", "redirect 200", "registry 307", "redirect 200"}
		if got := ex.kinds(); !reflect.DeepEqual(got, want) {
			t.Errorf("exchanges = %q, want %q", got, want)
		}
	})
	t.Run("basic upstream", func(t *testing.T) {
		cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				t.Errorf("the CDN received an Authorization header")
			}
			_, _ = io.WriteString(w, "blob")
		}))
		defer cdn.Close()
		var sawAuth atomic.Bool
		reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != secret {
				w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			switch r.URL.Path {
			case "/v2/app/blobs/sha256:aa":
				// a redirect to the same origin keeps the credentials
				http.Redirect(w, r, "/v2/app/blobs/sha256:bb", http.StatusFound)
			case "/v2/app/blobs/sha256:bb":
				sawAuth.Store(true)
				http.Redirect(w, r, cdn.URL+"/b", http.StatusTemporaryRedirect)
			}
		}))
		defer reg.Close()
		c := mustNew(t, Config{Name: "private", Endpoints: []string{reg.URL}, Username: "alice", Password: secret}, Options{})
		if body, err := get(t, c, t.Context(), "blobs/sha256:aa"); err != nil || body != "blob" {
			t.Fatalf("blob: %q, %v", body, err)
		}
		if !sawAuth.Load() {
			t.Errorf("the same-origin redirect lost the credentials")
		}
	})
	t.Run("too many redirects", func(t *testing.T) {
		var hops atomic.Int64
		reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hops.Add(1)
			http.Redirect(w, r, r.URL.Path, http.StatusTemporaryRedirect)
		}))
		defer reg.Close()
		c := mustNew(t, Config{Name: "x", Endpoints: []string{reg.URL}}, Options{})
		if _, err := get(t, c, t.Context(), "blobs/sha256:aa"); err == nil {
			t.Fatalf("an endless redirect succeeded")
		}
		if n := hops.Load(); n != maxRedirects+1 {
			t.Errorf("upstream saw %d requests, want %d", n, maxRedirects+1)
		}
	})
}

func TestCredentialsOnlyToTrustedRealm(t *testing.T) {
	tests := []struct {
		name      string
		realmHost string
		trusted   []string
		wantUser  string
	}{
		{"realm on the endpoint's host", "", nil, "alice"},
		{"realm on another host", "localhost", nil, ""},
		{"realm on a configured host", "localhost", []string{"LOCALHOST"}, "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHub(t)
			f.set(func(f *fakeHub) { f.realmHost = tc.realmHost })
			c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}, Username: "alice", Password: secret,
				TrustedRealmHosts: tc.trusted}, Options{})
			if body, err := get(t, c, t.Context(), "manifests/latest"); err != nil || body != manifestBody {
				t.Fatalf("manifest: %q, %v", body, err)
			}
			if _, user := f.lastRealm(); user != tc.wantUser {
				t.Errorf("realm saw user %q, want %q", user, tc.wantUser)
			}
		})
	}
}

func TestLoginOverridesConfig(t *testing.T) {
	f := newFakeHub(t)
	c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}, Username: "service", Password: secret}, Options{})
	bob := Login("bob", secret)
	steps := []struct {
		name     string
		as       string // "" for the configured credentials
		wantUser string
		wantHits int64
	}{
		{"the client's own login", "bob", "bob", 1},
		{"the configured login", "", "service", 2},
		{"the client's token is cached", "bob", "service", 2},
		{"the configured token is cached", "", "service", 2},
	}
	for _, s := range steps {
		var cred Credentials
		if s.as == "bob" {
			cred = bob
		}
		if _, err := fetch(t, c, t.Context(), Request{Method: http.MethodGet, Repository: "app", Path: "manifests/latest", Credentials: cred}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if _, user := f.lastRealm(); user != s.wantUser || f.realmHits.Load() != s.wantHits {
			t.Errorf("%s: last realm user %q after %d hits, want %q after %d", s.name, user, f.realmHits.Load(), s.wantUser, s.wantHits)
		}
	}
	anon := Login("", "")
	if _, err := fetch(t, c, t.Context(), Request{Method: http.MethodGet, Repository: "app", Path: "manifests/latest", Credentials: anon}); err != nil {
		t.Fatal(err)
	}
	if _, user := f.lastRealm(); user != "" {
		t.Errorf("empty credentials reached the realm as %q, want anonymous", user)
	}
}

func TestBasicAuthUpstream(t *testing.T) {
	var gotAccept []string
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != secret {
			w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		gotAccept = r.Header.Values("Accept")
		_, _ = io.WriteString(w, "ok")
	}))
	defer reg.Close()
	c := mustNew(t, Config{Name: "private", Endpoints: []string{reg.URL}, Username: "alice", Password: secret}, Options{})
	req := Request{Method: http.MethodGet, Repository: "app", Path: "manifests/x", Header: http.Header{
		"Accept":        {"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"},
		"Authorization": {"Bearer smuggled"},
	}}
	if body, err := fetch(t, c, t.Context(), req); err != nil || body != "ok" {
		t.Errorf("with credentials: %q, %v", body, err)
	}
	if !reflect.DeepEqual(gotAccept, req.Header["Accept"]) {
		t.Errorf("Accept forwarded as %q, want %q", gotAccept, req.Header["Accept"])
	}
	anonymous := mustNew(t, Config{Name: "private", Endpoints: []string{reg.URL}}, Options{})
	_, err := fetch(t, anonymous, t.Context(), req)
	var ue *Error
	if !errors.As(err, &ue) || ue.Status != http.StatusUnauthorized {
		t.Errorf("anonymous: %v, want a 401 *Error", err)
	}
}

func TestErrorAnswers(t *testing.T) {
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/limited"):
			w.Header().Set("Retry-After", "7")
			w.Header().Set("Ratelimit-Limit", "100;w=21600")
			w.Header().Set("Ratelimit-Remaining", "0;w=21600")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
		case strings.HasSuffix(r.URL.Path, "/html"):
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, "<html>forbidden</html>")
		case strings.HasSuffix(r.URL.Path, "/huge"):
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"errors":[{"code":"NAME_INVALID","message":"`+strings.Repeat("x", 100<<10)+`"}]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no such manifest"},{"code":"NAME_UNKNOWN","message":"no such repo"}]}`)
		}
	}))
	defer reg.Close()
	c := mustNew(t, Config{Name: "x", Endpoints: []string{reg.URL}}, Options{})
	tests := []struct {
		path       string
		status     int
		codes      []oci.Code
		retryAfter string
		remaining  int // -1: no rate limit
	}{
		{"manifests/limited", 429, []oci.Code{oci.CodeTooManyRequests}, "7", 0},
		{"manifests/missing", 404, []oci.Code{oci.CodeManifestUnknown, oci.CodeNameUnknown}, "", -1},
		{"manifests/html", 403, nil, "", -1},
		{"manifests/huge", 400, nil, "", -1}, // cut at 64 KiB: no longer JSON
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			_, err := get(t, c, t.Context(), tc.path)
			var ue *Error
			if !errors.As(err, &ue) {
				t.Fatalf("%s: %v, want *Error", tc.path, err)
			}
			var codes []oci.Code
			for _, it := range ue.Items {
				codes = append(codes, it.Code)
			}
			if ue.Upstream != "x" || ue.Status != tc.status || !reflect.DeepEqual(codes, tc.codes) || ue.RetryAfter != tc.retryAfter {
				t.Errorf("%s: %+v, want status %d, codes %v, Retry-After %q", tc.path, ue, tc.status, tc.codes, tc.retryAfter)
			}
			if tc.remaining >= 0 && (ue.RateLimit == nil || ue.RateLimit.Remaining != tc.remaining || ue.RateLimit.Limit != 100) {
				t.Errorf("%s: rate limit %+v, want %d remaining of 100", tc.path, ue.RateLimit, tc.remaining)
			}
			if tc.remaining < 0 && ue.RateLimit != nil {
				t.Errorf("%s: rate limit %+v, want none", tc.path, ue.RateLimit)
			}
			if msg := ue.Error(); !strings.Contains(msg, "upstream x") || !strings.Contains(msg, strconv.Itoa(tc.status)) {
				t.Errorf("%s: Error() = %q, want the upstream and the status", tc.path, msg)
			}
		})
	}
}

func TestRealmRefusal(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		wantStatus int
		wantCode   oci.Code
	}{
		{"401", http.StatusUnauthorized, http.StatusUnauthorized, oci.CodeUnauthorized},
		{"403", http.StatusForbidden, http.StatusForbidden, oci.CodeDenied},
		{"400 is an authentication failure", http.StatusBadRequest, http.StatusUnauthorized, oci.CodeUnauthorized},
		{"503 keeps its status", http.StatusServiceUnavailable, http.StatusServiceUnavailable, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeHub(t)
			f.set(func(f *fakeHub) { f.realmStatus = tc.status })
			c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}}, Options{})
			_, err := get(t, c, t.Context(), "manifests/latest")
			var ue *Error
			if !errors.As(err, &ue) || ue.Status != tc.wantStatus {
				t.Fatalf("got %v, want a %d *Error", err, tc.wantStatus)
			}
			if tc.wantCode != "" && (len(ue.Items) != 1 || ue.Items[0].Code != tc.wantCode) {
				t.Errorf("items %+v, want %s", ue.Items, tc.wantCode)
			}
		})
	}
}

func TestSecretsStayOutOfErrorsAndLogs(t *testing.T) {
	f := newFakeHub(t)
	core, logs := observer.New(zapcore.DebugLevel)
	var texts []string
	record := func(ex Exchange) {
		if ex.Err != nil {
			texts = append(texts, ex.Err.Error())
		}
	}
	opts := Options{Logger: zap.New(core), OnResponse: record}
	wrong := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}, Username: "alice", Password: "wrong-" + secret}, opts)
	_, err := get(t, wrong, t.Context(), "manifests/latest")
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	texts = append(texts, err.Error())
	right := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}, Username: "alice", Password: secret}, opts)
	if _, err := get(t, right, t.Context(), "manifests/latest"); err != nil {
		t.Fatal(err)
	}
	if body, err := get(t, right, t.Context(), "blobs/sha256:aa"); err != nil || body != f.blob {
		t.Fatalf("blob: %d bytes, %v", len(body), err)
	}
	// the CDN goes away: the failed redirect must not show its signed URL
	f.cdn.Close()
	_, err = get(t, right, t.Context(), "blobs/sha256:aa")
	if err == nil {
		t.Fatal("a blob came from a closed CDN")
	}
	texts = append(texts, err.Error())
	for _, e := range logs.All() {
		b, _ := json.Marshal(e.ContextMap())
		texts = append(texts, e.Message+" "+string(b))
	}
	if len(logs.FilterMessage("following upstream redirect").All()) == 0 || len(logs.FilterMessage("upstream endpoint failed").All()) == 0 {
		t.Fatalf("the logs to check were not written: %d entries", logs.Len())
	}
	for _, s := range texts {
		for _, leak := range []string{secret, "tok-", signature, "SIGNED", "Basic ", "Bearer "} {
			if strings.Contains(s, leak) {
				t.Errorf("%q leaked: %s", leak, s)
			}
		}
	}
}

func TestRedirectTargetChallengeIsNotLearned(t *testing.T) {
	var foreignRealmHits atomic.Int64
	foreignRealm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignRealmHits.Add(1)
		_, _ = io.WriteString(w, `{"token":"foreign"}`)
	}))
	defer foreignRealm.Close()
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the redirect target received an Authorization header")
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+foreignRealm.URL+`/token",service="cdn"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer cdn.Close()
	var registryHits atomic.Int64
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		registryHits.Add(1)
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("the registry received Authorization %q it never asked for", a)
		}
		http.Redirect(w, r, cdn.URL+"/blob", http.StatusTemporaryRedirect)
	}))
	defer reg.Close()
	c := mustNew(t, Config{Name: "x", Endpoints: []string{reg.URL}, Username: "alice", Password: secret}, Options{})
	_, err := get(t, c, t.Context(), "blobs/sha256:aa")
	var ue *Error
	if !errors.As(err, &ue) || ue.Status != http.StatusUnauthorized {
		t.Fatalf("got %v, want the redirect target's 401 as an *Error", err)
	}
	if n := registryHits.Load(); n != 1 {
		t.Errorf("registry hits = %d, want 1 (a redirect target's 401 is final)", n)
	}
	if n := foreignRealmHits.Load(); n != 0 {
		t.Errorf("the redirect target's realm was asked %d times, want 0", n)
	}
	if _, ok := c.endpoints[0].getChallenge(); ok {
		t.Errorf("the endpoint adopted the redirect target's challenge")
	}
}
