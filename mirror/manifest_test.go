package mirror

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// testClock is a settable clock shared by a mirror and its upstream client.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

// Now returns the clock's time.
func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock forward.
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeAnswer replaces the answer of every manifest request of a
// fakeRegistry.
type fakeAnswer struct {
	status int    // 0: no override
	code   string // error code of the body; "": no body
}

// fakeRegistry serves manifests without auth, like a registry that reports
// a Docker Hub pull budget: limit GETs per window (0: no rate-limit
// headers), 429 once spent. It counts manifest GETs and HEADs.
type fakeRegistry struct {
	srv         *httptest.Server
	gets, heads atomic.Int64

	mu        sync.Mutex
	manifests map[string][]byte // "repo:tag" and "repo@digest"
	limit     int
	used      int
	answer    fakeAnswer
	// referrers is the status of every referrers API answer; 0: 404,
	// as a registry without the API.
	referrers int
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{manifests: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// push stores a new manifest under repo:tag and returns its digest.
func (f *fakeRegistry) push(repo, tag string) digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return pushManifest(f.manifests, repo, tag)
}

// pushManifest stores a new manifest, distinct from every other in
// manifests, under repo:tag and repo@digest, and returns its digest.
func pushManifest(manifests map[string][]byte, repo, tag string) digest.Digest {
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":2},"layers":[],"annotations":{"n":"%d"}}`,
		oci.MediaTypeOCIManifest, strings.Repeat("0", 64), len(manifests))
	d := digest.FromString(body)
	manifests[repo+":"+tag] = []byte(body)
	manifests[repo+"@"+d.String()] = []byte(body)
	return d
}

// untag removes repo:tag.
func (f *fakeRegistry) untag(repo, tag string) {
	f.mu.Lock()
	delete(f.manifests, repo+":"+tag)
	f.mu.Unlock()
}

// setLimit sets the pull budget and spends none of it yet.
func (f *fakeRegistry) setLimit(n int) {
	f.mu.Lock()
	f.limit, f.used = n, 0
	f.mu.Unlock()
}

// setAnswer overrides the answer of every manifest request.
func (f *fakeRegistry) setAnswer(a fakeAnswer) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	referrers := f.referrers
	f.mu.Unlock()
	if referrers != 0 && strings.Contains(r.URL.Path, "/referrers/") {
		writeFakeError(w, r, referrers, "UNKNOWN")
		return
	}
	if repo, ref, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/"); ok {
		// Manifests are blobs too, as in a registry's storage.
		f.mu.Lock()
		body, found := f.manifests[repo+"@"+ref]
		f.mu.Unlock()
		if !found {
			writeFakeError(w, r, http.StatusNotFound, "BLOB_UNKNOWN")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	}
	repo, ref, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/")
	if !ok {
		writeFakeError(w, r, http.StatusNotFound, "NOT_FOUND")
		return
	}
	get := r.Method == http.MethodGet
	if get {
		f.gets.Add(1)
	} else {
		f.heads.Add(1)
	}
	f.mu.Lock()
	answer := f.answer
	over := get && f.limit > 0 && f.used >= f.limit
	if get && !over {
		f.used++
	}
	limit, remaining := f.limit, max(f.limit-f.used, 0)
	sep := ":"
	if strings.Contains(ref, ":") {
		sep = "@"
	}
	body, found := f.manifests[repo+sep+ref]
	f.mu.Unlock()
	if limit > 0 {
		w.Header().Set("Ratelimit-Limit", fmt.Sprintf("%d;w=21600", limit))
		w.Header().Set("Ratelimit-Remaining", fmt.Sprintf("%d;w=21600", remaining))
	}
	switch {
	case answer.status != 0:
		writeFakeError(w, r, answer.status, answer.code)
	case over:
		writeFakeError(w, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	case !found:
		writeFakeError(w, r, http.StatusNotFound, "MANIFEST_UNKNOWN")
	default:
		w.Header().Set("Content-Type", oci.MediaTypeOCIManifest)
		w.Header().Set(oci.ContentDigestHeader, digest.FromBytes(body).String())
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if get {
			_, _ = w.Write(body)
		}
	}
}

// writeFakeError answers status with an OCI error body of code (none for a
// HEAD or an empty code).
func writeFakeError(w http.ResponseWriter, r *http.Request, status int, code string) {
	if code == "" || r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": code}}})
}

// manifestTest is a mirror of docker.io whose upstream is a fakeRegistry,
// with a settable clock.
type manifestTest struct {
	m    *Mirror
	reg  *fakeRegistry
	clk  *testClock
	logs *observer.ObservedLogs
}

// newManifestTest returns a mirror over a fake registry; cfg supplies the
// TTLs and limits, opts the upstream client's options.
func newManifestTest(t *testing.T, cfg Config, opts upstream.Options) *manifestTest {
	t.Helper()
	mt := &manifestTest{reg: newFakeRegistry(t), clk: newTestClock()}
	store, rec := openCache(t, cache.Options{Dir: t.TempDir(), Now: mt.clk.Now})
	opts.Now = mt.clk.Now
	c, err := upstream.New(upstream.Config{Name: DockerHub, Endpoints: []string{mt.reg.srv.URL}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	mt.logs = logs
	cfg.Upstreams, cfg.Store, cfg.Records, cfg.Now, cfg.Logger = []*upstream.Client{c}, store, rec, mt.clk.Now, zap.New(core)
	if mt.m, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return mt
}

// get sends GET path to the mirror.
func (mt *manifestTest) get(path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	mt.m.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

// wantUpstream fails the test unless the fake saw gets GETs and heads HEADs.
func (mt *manifestTest) wantUpstream(t *testing.T, step string, gets, heads int64) {
	t.Helper()
	if g, h := mt.reg.gets.Load(), mt.reg.heads.Load(); g != gets || h != heads {
		t.Errorf("%s: upstream saw %d GETs and %d HEADs, want %d and %d", step, g, h, gets, heads)
	}
}

// wantManifest fails the test unless w is a 200 with digest d.
func wantManifest(t *testing.T, step string, w *httptest.ResponseRecorder, d digest.Digest) {
	t.Helper()
	if w.Code != http.StatusOK || w.Header().Get(oci.ContentDigestHeader) != d.String() {
		t.Errorf("%s: %d %s (%s), want 200 %s", step, w.Code, w.Header().Get(oci.ContentDigestHeader), w.Body.String(), d)
	}
}

// wantError fails the test unless w is an OCI error of status and code.
func wantError(t *testing.T, step string, w *httptest.ResponseRecorder, status int, code oci.Code) {
	t.Helper()
	var body oci.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); w.Code != status || err != nil || len(body.Errors) == 0 || body.Errors[0].Code != code {
		t.Errorf("%s: %d %s, want %d %s", step, w.Code, w.Body.String(), status, code)
	}
}

func TestWarmTagCostsNothingThenOneHead(t *testing.T) {
	mt := newManifestTest(t, Config{}, upstream.Options{})
	d := mt.reg.push("library/app", "1")
	wantManifest(t, "cold", mt.get("/v2/app/manifests/1"), d)
	mt.wantUpstream(t, "cold", 1, 0)
	mt.clk.Add(DefaultTagTTL - time.Second)
	wantManifest(t, "warm", mt.get("/v2/app/manifests/1"), d)
	mt.wantUpstream(t, "warm within the TTL", 1, 0)
	mt.clk.Add(time.Second)
	wantManifest(t, "stale", mt.get("/v2/app/manifests/1"), d)
	mt.wantUpstream(t, "past the TTL", 1, 1)
	wantManifest(t, "revalidated", mt.get("/v2/app/manifests/1"), d)
	mt.wantUpstream(t, "after the revalidation", 1, 1)
}

func TestConcurrentRevalidationsShareOneHead(t *testing.T) {
	mt := newManifestTest(t, Config{}, upstream.Options{})
	d := mt.reg.push("library/app", "1")
	wantManifest(t, "cold", mt.get("/v2/app/manifests/1"), d)
	mt.clk.Add(DefaultTagTTL)
	const clients = 16
	var wg sync.WaitGroup
	answers := make([]*httptest.ResponseRecorder, clients)
	for i := range clients {
		wg.Go(func() { answers[i] = mt.get("/v2/app/manifests/1") })
	}
	wg.Wait()
	for i, w := range answers {
		wantManifest(t, fmt.Sprintf("client %d", i), w, d)
	}
	mt.wantUpstream(t, "concurrent revalidations", 1, 1)
}

func TestNegativeAnswers(t *testing.T) {
	missing := digest.FromString("nothing")
	tests := []struct {
		name       string
		answer     fakeAnswer
		path       string
		status     int
		code       oci.Code
		remembered bool
		wantGets   int64 // after two requests
	}{
		{"unknown tag", fakeAnswer{}, "/v2/app/manifests/nope", 404, oci.CodeManifestUnknown, true, 1},
		{"unknown digest", fakeAnswer{}, "/v2/app/manifests/" + missing.String(), 404, oci.CodeManifestUnknown, true, 1},
		{"unknown repository", fakeAnswer{404, "NAME_UNKNOWN"}, "/v2/app/manifests/1", 404, oci.CodeNameUnknown, true, 1},
		{"404 without a body", fakeAnswer{404, ""}, "/v2/app/manifests/1", 404, oci.CodeManifestUnknown, true, 1},
		{"404 of another kind", fakeAnswer{404, "NOT_FOUND"}, "/v2/app/manifests/1", 404, "NOT_FOUND", false, 2},
		// A refusal asks the anonymous client to log in to the mirror.
		{"401", fakeAnswer{401, "UNAUTHORIZED"}, "/v2/app/manifests/1", 401, oci.CodeUnauthorized, false, 2},
		{"403", fakeAnswer{403, "DENIED"}, "/v2/app/manifests/1", 401, oci.CodeUnauthorized, false, 2},
		{"500", fakeAnswer{500, "UNKNOWN"}, "/v2/app/manifests/1", 502, oci.CodeUnavailable, false, 2},
		{"503", fakeAnswer{503, "UNAVAILABLE"}, "/v2/app/manifests/1", 502, oci.CodeUnavailable, false, 2},
		// The 429 holds the next GET back: one request, but nothing remembered.
		{"429", fakeAnswer{429, "TOOMANYREQUESTS"}, "/v2/app/manifests/1", 429, oci.CodeTooManyRequests, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mt := newManifestTest(t, Config{}, upstream.Options{})
			mt.reg.push("library/app", "1")
			mt.reg.setAnswer(tc.answer)
			for i := range 2 {
				wantError(t, fmt.Sprintf("request %d", i+1), mt.get(tc.path), tc.status, tc.code)
			}
			mt.wantUpstream(t, "two requests", tc.wantGets, 0)
			wantHits := int64(0)
			if tc.remembered {
				wantHits = 1
			}
			if s := mt.m.Stats(); s.NegativeHits != wantHits || mt.m.negative.len() != int(wantHits) {
				t.Errorf("negative hits %d with %d entries, want %d", s.NegativeHits, mt.m.negative.len(), wantHits)
			}
		})
	}
}

func TestNegativeAnswerExpires(t *testing.T) {
	const ttl = 10 * time.Second
	mt := newManifestTest(t, Config{NegativeTTL: ttl}, upstream.Options{})
	wantError(t, "missing", mt.get("/v2/app/manifests/1"), 404, oci.CodeManifestUnknown)
	d := mt.reg.push("library/app", "1")
	mt.clk.Add(ttl - time.Second)
	wantError(t, "remembered", mt.get("/v2/app/manifests/1"), 404, oci.CodeManifestUnknown)
	mt.wantUpstream(t, "within the negative TTL", 1, 0)
	mt.clk.Add(time.Second)
	wantManifest(t, "pushed", mt.get("/v2/app/manifests/1"), d)
	mt.wantUpstream(t, "past the negative TTL", 2, 0)
}

func TestNegativeCacheDisabled(t *testing.T) {
	mt := newManifestTest(t, Config{NegativeTTL: -1}, upstream.Options{})
	for i := range 3 {
		wantError(t, fmt.Sprintf("request %d", i+1), mt.get("/v2/app/manifests/nope"), 404, oci.CodeManifestUnknown)
	}
	mt.wantUpstream(t, "disabled", 3, 0)
	if s := mt.m.Stats(); s.NegativeHits != 0 {
		t.Errorf("negative hits %d with the cache disabled", s.NegativeHits)
	}
}

func TestRevalidationNotFoundIsRemembered(t *testing.T) {
	mt := newManifestTest(t, Config{}, upstream.Options{})
	d := mt.reg.push("library/app", "1")
	wantManifest(t, "cold", mt.get("/v2/app/manifests/1"), d)
	mt.reg.untag("library/app", "1")
	mt.clk.Add(DefaultTagTTL)
	for i := range 2 {
		wantError(t, fmt.Sprintf("deleted tag %d", i+1), mt.get("/v2/app/manifests/1"), 404, oci.CodeManifestUnknown)
	}
	mt.wantUpstream(t, "deleted tag", 1, 1)
}

func TestStaleServesAreCounted(t *testing.T) {
	mt := newManifestTest(t, Config{StaleIfError: time.Hour}, upstream.Options{})
	d := mt.reg.push("library/app", "1")
	wantManifest(t, "cold", mt.get("/v2/app/manifests/1"), d)
	mt.reg.setAnswer(fakeAnswer{503, "UNAVAILABLE"})
	mt.clk.Add(DefaultTagTTL)
	wantManifest(t, "stale", mt.get("/v2/app/manifests/1"), d)
	wantManifest(t, "stale again", mt.get("/v2/app/manifests/1"), d)
	if s := mt.m.Stats(); s.StaleServes != 2 {
		t.Errorf("stale serves %d, want 2", s.StaleServes)
	}
	mt.clk.Add(time.Hour)
	wantError(t, "past stale_if_error", mt.get("/v2/app/manifests/1"), 502, oci.CodeUnavailable)
	if s := mt.m.Stats(); s.StaleServes != 2 {
		t.Errorf("stale serves %d after a refused stale answer, want 2", s.StaleServes)
	}
}

func TestPullBudgetHoldsBackManifestGETs(t *testing.T) {
	const ttl = 20 * time.Second // less than the probe interval
	mt := newManifestTest(t, Config{TagTTL: ttl}, upstream.Options{})
	mt.reg.setLimit(2)
	a := mt.reg.push("library/a", "1")
	b := mt.reg.push("library/b", "1")
	c := mt.reg.push("library/c", "1")
	wantManifest(t, "a", mt.get("/v2/a/manifests/1"), a)
	wantManifest(t, "b, the last pull of the budget", mt.get("/v2/b/manifests/1"), b)
	mt.wantUpstream(t, "budget spent", 2, 0)

	for i := range 3 {
		w := mt.get("/v2/c/manifests/1")
		wantError(t, fmt.Sprintf("uncached tag %d", i+1), w, 429, oci.CodeTooManyRequests)
		if ra := w.Header().Get("Retry-After"); ra != "60" {
			t.Errorf("Retry-After %q, want 60 (the probe interval)", ra)
		}
	}
	wantManifest(t, "cached fresh tag", mt.get("/v2/a/manifests/1"), a)
	mt.wantUpstream(t, "while held", 2, 0)
	if s := mt.m.Stats(); s.RateLimitHolds != 3 {
		t.Errorf("rate-limit holds %d, want 3", s.RateLimitHolds)
	}
	if n := mt.logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("holding back").Len(); n != 1 {
		t.Errorf("%d warnings about held-back requests, want 1 per exhaustion", n)
	}

	// The tag moved while the budget is spent: its HEAD is free, but its
	// new manifest would cost a GET, so the old one is served stale.
	a2 := mt.reg.push("library/a", "1")
	mt.clk.Add(ttl)
	wantManifest(t, "moved tag while held", mt.get("/v2/a/manifests/1"), a)
	mt.wantUpstream(t, "moved tag while held", 2, 1)
	if s := mt.m.Stats(); s.StaleServes != 1 || s.RateLimitHolds != 4 {
		t.Errorf("stats %+v, want 1 stale serve and 4 holds", s)
	}

	// The window refills; the next HEAD reports it and GETs resume at once.
	mt.reg.setLimit(5)
	mt.clk.Add(ttl)
	wantManifest(t, "moved tag after the refill", mt.get("/v2/a/manifests/1"), a2)
	wantManifest(t, "uncached tag after the refill", mt.get("/v2/c/manifests/1"), c)
	mt.wantUpstream(t, "after the refill", 4, 2)
}

func TestPullBudgetReserve(t *testing.T) {
	mt := newManifestTest(t, Config{}, upstream.Options{RateLimitReserve: 3})
	mt.reg.setLimit(4)
	a := mt.reg.push("library/a", "1")
	mt.reg.push("library/b", "1")
	wantManifest(t, "a", mt.get("/v2/a/manifests/1"), a)
	wantError(t, "b, beyond the reserve", mt.get("/v2/b/manifests/1"), 429, oci.CodeTooManyRequests)
	mt.wantUpstream(t, "reserve kept", 1, 0)
	if b := mt.m.upstreams[DockerHub].Budget(); !b.Held || b.Remaining != 3 || b.Reserve != 3 {
		t.Errorf("Budget() = %+v, want held at the reserve of 3", b)
	}
}

func TestWriteManifest(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	mc := manifestContent{digest: digest.FromBytes(body), mediaType: oci.MediaTypeOCIManifest, data: body}
	etag := `"` + mc.digest.String() + `"`
	tests := []struct {
		name, method string
		header       map[string]string
		status       int
		body         string
		length       string
	}{
		{"GET", http.MethodGet, nil, http.StatusOK, string(body), strconv.Itoa(len(body))},
		{"HEAD", http.MethodHead, nil, http.StatusOK, "", strconv.Itoa(len(body))},
		{"If-None-Match of the digest", http.MethodGet, map[string]string{"If-None-Match": etag}, http.StatusNotModified, "", ""},
		{"If-None-Match of another", http.MethodGet, map[string]string{"If-None-Match": `"sha256:0"`}, http.StatusOK, string(body), strconv.Itoa(len(body))},
		{"Range", http.MethodGet, map[string]string{"Range": "bytes=0-3"}, http.StatusPartialContent, string(body[:4]), "4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/v2/a/manifests/"+mc.digest.String(), nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			writeManifest(w, r, mc)
			if w.Code != tc.status || w.Body.String() != tc.body {
				t.Errorf("writeManifest: %d %q, want %d %q", w.Code, w.Body, tc.status, tc.body)
			}
			if got := w.Header().Get("Content-Length"); got != tc.length {
				t.Errorf("Content-Length = %q, want %q", got, tc.length)
			}
			if tc.status == http.StatusNotModified {
				return
			}
			h := w.Header()
			if h.Get("Content-Type") != oci.MediaTypeOCIManifest || h.Get(oci.ContentDigestHeader) != mc.digest.String() ||
				h.Get("Etag") != etag || h.Get("Accept-Ranges") != "bytes" {
				t.Errorf("headers: %v", h)
			}
		})
	}
}
