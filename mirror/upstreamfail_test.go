package mirror

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// failMode is one way an upstream manifest or tag fetch can fail.
type failMode string

// The failure modes the flaky registry injects.
const (
	failNone          failMode = ""
	failRefused       failMode = "connection refused"
	failResetMidBody  failMode = "reset mid-body"
	failTruncated     failMode = "truncated body"
	failNoBody        failMode = "closed before the body"
	failStall         failMode = "stalled body"
	failHeaderTimeout failMode = "no response headers"
	fail500           failMode = "500"
	fail502           failMode = "502 without a body"
	fail503           failMode = "503"
	fail504           failMode = "504"
	fail429           failMode = "429"
	failBadJSON       failMode = "bad JSON"
	failOversize      failMode = "oversize announced"
	failOversizeChunk failMode = "oversize chunked"
	failWrongDigest   failMode = "wrong digest"
	failRedirectLoop  failMode = "redirect loop"
	failRealm500      failMode = "token endpoint 500"
	failRealmBadJSON  failMode = "token endpoint bad JSON"
	failRealmRefused  failMode = "token endpoint refuses connections"
	failRealmNoToken  failMode = "token endpoint answers no token"
)

// flakyRegistry serves manifests behind a Bearer token realm and fails in
// the set mode: status failures on every registry request, body failures
// on manifest GETs (HEADs still report the tag's current digest, so that
// a moved tag needs the failing GET), realm failures on token requests.
type flakyRegistry struct {
	srv, realm *httptest.Server

	mu        sync.Mutex
	mode      failMode
	manifests map[string][]byte
	release   chan struct{}
}

func newFlakyRegistry(t *testing.T) *flakyRegistry {
	t.Helper()
	f := &flakyRegistry{manifests: map[string][]byte{}, release: make(chan struct{})}
	f.realm = httptest.NewServer(http.HandlerFunc(f.serveRealm))
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.release)
		f.srv.Close()
		f.realm.Close()
	})
	return f
}

func (f *flakyRegistry) setMode(m failMode) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

func (f *flakyRegistry) push(repo, tag string) digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return pushManifest(f.manifests, repo, tag)
}

// statusFailures are the answers of the failure modes that are statuses.
var statusFailures = map[failMode]struct {
	status           int
	code, retryAfter string
}{
	fail500: {500, "UNKNOWN", ""},
	fail502: {502, "", ""},
	fail503: {503, "UNAVAILABLE", "3"},
	fail504: {504, "", ""},
	fail429: {429, "TOOMANYREQUESTS", "7"},
}

func (f *flakyRegistry) serveRealm(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	switch mode {
	case failRealm500:
		writeFakeError(w, r, http.StatusInternalServerError, "UNKNOWN")
	case failRealmBadJSON:
		_, _ = w.Write([]byte(`{"token": "abc`))
	case failRealmNoToken:
		_, _ = w.Write([]byte(`{"expires_in": 60}`))
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"token": "t", "expires_in": 60})
	}
}

func (f *flakyRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer t" {
		w.Header().Set("Www-Authenticate", `Bearer realm="`+f.realm.URL+`/token",service="flaky"`)
		writeFakeError(w, r, http.StatusUnauthorized, "UNAUTHORIZED")
		return
	}
	if r.URL.Path == "/v2/" {
		w.WriteHeader(http.StatusOK)
		return
	}
	switch mode {
	case fail500, fail502, fail503, fail504, fail429:
		a := statusFailures[mode]
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		writeFakeError(w, r, a.status, a.code)
		return
	case failRedirectLoop:
		http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
		return
	case failHeaderTimeout:
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	}
	repo, ref, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/")
	sep := ":"
	if strings.Contains(ref, ":") {
		sep = "@"
	}
	f.mu.Lock()
	body, found := f.manifests[repo+sep+ref]
	f.mu.Unlock()
	if !found {
		writeFakeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN")
		return
	}
	h := w.Header()
	h.Set("Content-Type", oci.MediaTypeOCIManifest)
	h.Set(oci.ContentDigestHeader, digest.FromBytes(body).String())
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		return
	}
	switch mode {
	case failResetMidBody, failTruncated, failNoBody:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		n := len(body) / 2
		if mode == failNoBody {
			n = 0
		}
		_, _ = w.Write(body[:n])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if tc, ok := conn.(*net.TCPConn); ok && mode == failResetMidBody {
			_ = tc.SetLinger(0) // a reset, not a clean close
		}
		_ = conn.Close()
		return
	case failStall:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	case failBadJSON:
		body = []byte(`{"schemaVersion": 2, "layers": [`)
		h.Set(oci.ContentDigestHeader, digest.FromBytes(body).String())
	case failOversize:
		h.Set("Content-Length", strconv.Itoa(MaxManifestSize+1))
		w.WriteHeader(http.StatusOK)
		return
	case failOversizeChunk:
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat(" ", 64<<10))
		_, _ = w.Write([]byte("{"))
		for range MaxManifestSize/len(chunk) + 1 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		_, _ = w.Write([]byte("}"))
		return
	case failWrongDigest:
		body = append([]byte(nil), body...)
		body[len(body)-2] = ' '
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// TestUpstreamFailuresMapRight walks every way an upstream manifest or tag
// fetch can fail: a tag nothing cached answers gets 502, 503 or 504 (or the
// upstream's own 429), never a 500, and a cached tag whose revalidation
// fails that way is served stale.
func TestUpstreamFailuresMapRight(t *testing.T) {
	tests := []struct {
		mode   failMode
		status int
		code   oci.Code
	}{
		{failRefused, 502, oci.CodeUnavailable},
		{failResetMidBody, 502, oci.CodeUnavailable},
		{failTruncated, 502, oci.CodeUnavailable},
		{failNoBody, 502, oci.CodeUnavailable},
		{failStall, 504, oci.CodeUnavailable},
		{failHeaderTimeout, 504, oci.CodeUnavailable},
		{fail500, 502, oci.CodeUnavailable},
		{fail502, 502, oci.CodeUnavailable},
		{fail503, 502, oci.CodeUnavailable},
		{fail504, 504, oci.CodeUnavailable},
		{fail429, 429, oci.CodeTooManyRequests},
		{failBadJSON, 502, oci.CodeUnavailable},
		{failOversize, 502, oci.CodeUnavailable},
		{failOversizeChunk, 502, oci.CodeUnavailable},
		{failWrongDigest, 502, oci.CodeUnavailable},
		{failRedirectLoop, 502, oci.CodeUnavailable},
		{failRealm500, 502, oci.CodeUnavailable},
		{failRealmBadJSON, 502, oci.CodeUnavailable},
		{failRealmRefused, 502, oci.CodeUnavailable},
		{failRealmNoToken, 502, oci.CodeUnavailable},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			f := newFlakyRegistry(t)
			clk := newTestClock()
			store, rec := openCache(t, cache.Options{Dir: t.TempDir(), Now: clk.Now})
			c, err := upstream.New(upstream.Config{Name: DockerHub, Endpoints: []string{f.srv.URL}}, upstream.Options{
				Now: clk.Now, StallTimeout: 500 * time.Millisecond, ResponseHeaderTimeout: time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(Config{Upstreams: []*upstream.Client{c}, Store: store, Records: rec, Now: clk.Now, NegativeTTL: -1})
			if err != nil {
				t.Fatal(err)
			}
			get := func(path string) *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				m.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
				return w
			}
			old := f.push("library/app", "1")
			wantManifest(t, "cold", get("/v2/app/manifests/1"), old)
			f.push("library/app", "1") // the tag moves upstream
			f.push("library/app", "2")
			f.setMode(tc.mode)
			switch tc.mode {
			case failRefused:
				f.srv.Close() // nothing listens any more
			case failRealmRefused:
				f.realm.Close()
			}
			clk.Add(DefaultTagTTL + time.Second) // past the tag's TTL and any token's lifetime

			w := get("/v2/app/manifests/2")
			wantError(t, "uncached tag", w, tc.status, tc.code)
			if w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("uncached tag: Content-Type %q", w.Header().Get("Content-Type"))
			}
			wantManifest(t, "cached tag served stale", get("/v2/app/manifests/1"), old)
			if s := m.Stats(); s.StaleServes != 1 {
				t.Errorf("stale serves %d, want 1", s.StaleServes)
			}
		})
	}
}
