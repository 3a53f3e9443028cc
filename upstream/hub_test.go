package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// secret is the password of the fake hub's users; it must never appear in
// an error or a log.
const secret = "s3cr3t-password"

// signature is the signed query of the CDN redirect; it must never appear in
// an error or a log.
const signature = "sig=SIGNED-abc123"

// manifestBody is what the fake registry answers for a manifest.
const manifestBody = `{"schemaVersion":2}`

// fakeHub behaves like Docker Hub on three loopback servers: a registry that
// challenges for Bearer tokens scoped per repository, a token realm that
// accepts anonymous requests and Basic credentials with the password
// secret, and a CDN that blob GETs are redirected to (same IP, another
// port). The CDN fails the test when it sees an Authorization header.
type fakeHub struct {
	t        *testing.T
	registry *httptest.Server
	realm    *httptest.Server
	cdn      *httptest.Server

	realmHits    atomic.Int64
	registryHits atomic.Int64
	cdnHits      atomic.Int64
	gen          atomic.Int64 // tokens of older generations are refused

	mu           sync.Mutex
	realmQueries []url.Values
	realmUsers   []string      // user of each realm request; "" when anonymous
	expiresIn    any           // expires_in of token answers; nil: absent
	issuedAt     func() string // issued_at of token answers; nil: absent
	accessToken  bool          // answer access_token instead of token
	realmHost    string        // host put in the challenge's realm URL instead of 127.0.0.1
	realmStatus  int           // when set, the realm refuses with this status
	blob         string
}

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	f := &fakeHub{t: t, blob: strings.Repeat("blob-bytes ", 1000)}
	f.realm = httptest.NewServer(http.HandlerFunc(f.serveRealm))
	f.cdn = httptest.NewServer(http.HandlerFunc(f.serveCDN))
	f.registry = httptest.NewServer(http.HandlerFunc(f.serveRegistry))
	t.Cleanup(func() { f.registry.Close(); f.realm.Close(); f.cdn.Close() })
	return f
}

// set changes the hub's behaviour under its lock.
func (f *fakeHub) set(change func(f *fakeHub)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// lastRealm returns the query and user of the last realm request.
func (f *fakeHub) lastRealm() (url.Values, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.realmQueries) == 0 {
		f.t.Fatal("the realm was never asked")
	}
	return f.realmQueries[len(f.realmQueries)-1], f.realmUsers[len(f.realmUsers)-1]
}

func (f *fakeHub) serveRealm(w http.ResponseWriter, r *http.Request) {
	f.realmHits.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	user := ""
	if r.Header.Get("Authorization") != "" {
		u, pass, ok := r.BasicAuth()
		if !ok || pass != secret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"details":"incorrect username or password"}`)
			return
		}
		user = u
	}
	f.realmQueries = append(f.realmQueries, r.URL.Query())
	f.realmUsers = append(f.realmUsers, user)
	if f.realmStatus != 0 {
		w.WriteHeader(f.realmStatus)
		return
	}
	token := fmt.Sprintf("tok-%d-%s", f.gen.Load(), r.URL.Query().Get("scope"))
	ans := map[string]any{"token": token}
	if f.accessToken {
		ans = map[string]any{"access_token": token}
	}
	if f.expiresIn != nil {
		ans["expires_in"] = f.expiresIn
	}
	if f.issuedAt != nil {
		ans["issued_at"] = f.issuedAt()
	}
	_ = json.NewEncoder(w).Encode(ans)
}

func (f *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request) {
	f.cdnHits.Add(1)
	if r.Header.Get("Authorization") != "" {
		f.t.Errorf("the CDN received an Authorization header")
		http.Error(w, "no auth here", http.StatusForbidden)
		return
	}
	if r.URL.RawQuery != signature {
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	f.mu.Lock()
	blob := f.blob
	f.mu.Unlock()
	_, _ = io.WriteString(w, blob)
}

// repoOf returns the repository of a /v2/ path, "" for "/v2/".
func repoOf(path string) string {
	rest := strings.TrimPrefix(path, "/v2/")
	for _, kind := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.Index(rest, kind); i >= 0 {
			return rest[:i]
		}
	}
	return ""
}

func (f *fakeHub) serveRegistry(w http.ResponseWriter, r *http.Request) {
	f.registryHits.Add(1)
	scope := ""
	if repo := repoOf(r.URL.Path); repo != "" {
		scope = "repository:" + repo + ":pull"
	}
	if r.Header.Get("Authorization") != fmt.Sprintf("Bearer tok-%d-%s", f.gen.Load(), scope) {
		f.mu.Lock()
		realm := f.realm.URL
		if f.realmHost != "" {
			realm = strings.Replace(realm, "127.0.0.1", f.realmHost, 1)
		}
		f.mu.Unlock()
		ch := fmt.Sprintf(`Bearer realm="%s/token",service="fake"`, realm)
		if scope != "" {
			ch += fmt.Sprintf(`,scope="%s"`, scope)
		}
		w.Header().Set("WWW-Authenticate", ch)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	switch {
	case strings.Contains(r.URL.Path, "/blobs/"):
		http.Redirect(w, r, f.cdn.URL+"/blob?"+signature, http.StatusTemporaryRedirect)
	case strings.Contains(r.URL.Path, "/manifests/"):
		w.Header().Set("Ratelimit-Limit", "100;w=21600")
		w.Header().Set("Ratelimit-Remaining", "99;w=21600")
		_, _ = io.WriteString(w, manifestBody)
	default:
		_, _ = io.WriteString(w, "{}")
	}
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// exchanges records the exchanges a client reports.
type exchanges struct {
	mu  sync.Mutex
	all []Exchange
}

func (e *exchanges) add(ex Exchange) {
	e.mu.Lock()
	e.all = append(e.all, ex)
	e.mu.Unlock()
}

// kinds returns "kind status" of every exchange so far, and forgets them.
func (e *exchanges) kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ex := range e.all {
		out = append(out, fmt.Sprintf("%s %d", ex.Kind, ex.Status))
	}
	e.all = nil
	return out
}

// mustNew returns a client or fails the test.
func mustNew(t testing.TB, cfg Config, opts Options) *Client {
	t.Helper()
	c, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return c
}

// get GETs a path of repository "app" and reads the whole body.
func get(t *testing.T, c *Client, ctx context.Context, path string) (string, error) {
	t.Helper()
	return fetch(t, c, ctx, Request{Method: http.MethodGet, Repository: "app", Path: path})
}

// fetch performs req and reads the whole body.
func fetch(t *testing.T, c *Client, ctx context.Context, req Request) (string, error) {
	t.Helper()
	resp, err := c.Do(ctx, req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
