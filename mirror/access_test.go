package mirror

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// accessStep is one request of an access scenario and what it must get.
type accessStep struct {
	advance time.Duration // clock moves first
	answer  fakeAnswer    // the upstream's answer from now on
	path    string        // "@" is replaced by the digest of library/app:1
	status  int
	code    oci.Code // for errors
	gets    int64    // upstream GETs and HEADs so far
	heads   int64
}

func TestAccessDecisions(t *testing.T) {
	const ttl = time.Minute
	cold := accessStep{path: "/v2/app/manifests/1", status: 200, gets: 1}
	tests := []struct {
		name  string
		steps []accessStep
	}{
		{"within the TTL cached content costs nothing", []accessStep{
			cold,
			{path: "/v2/app/manifests/@", status: 200, gets: 1},
			{advance: ttl / 2, path: "/v2/app/manifests/@", status: 200, gets: 1},
		}},
		{"past the TTL one HEAD checks again", []accessStep{
			cold,
			{advance: 2 * ttl, path: "/v2/app/manifests/@", status: 200, gets: 1, heads: 1},
			{path: "/v2/app/manifests/@", status: 200, gets: 1, heads: 1},
		}},
		{"a refusal is served from the cache's disk to nobody", []accessStep{
			cold,
			{advance: 2 * ttl, answer: fakeAnswer{401, "UNAUTHORIZED"}, path: "/v2/app/manifests/@", status: 401, code: oci.CodeUnauthorized, gets: 1, heads: 1},
			// The refusal is a decision too: no second HEAD within the TTL.
			{path: "/v2/app/manifests/@", status: 401, code: oci.CodeUnauthorized, gets: 1, heads: 1},
			// During an outage the last decision, a refusal, stands.
			{advance: 2 * ttl, answer: fakeAnswer{503, "UNAVAILABLE"}, path: "/v2/app/manifests/@", status: 502, code: oci.CodeUnavailable, gets: 1, heads: 2},
		}},
		{"an outage keeps serving what was allowed", []accessStep{
			cold,
			{advance: 2 * ttl, answer: fakeAnswer{503, "UNAVAILABLE"}, path: "/v2/app/manifests/@", status: 200, gets: 1, heads: 1},
			// The failed check is remembered: no request waits on the
			// upstream again for a while.
			{answer: fakeAnswer{503, "UNAVAILABLE"}, path: "/v2/app/manifests/@", status: 200, gets: 1, heads: 1},
		}},
		{"a digest is not served under another repository", []accessStep{
			cold,
			{path: "/v2/other/manifests/@", status: 404, code: oci.CodeManifestUnknown, gets: 1, heads: 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mt := newManifestTest(t, Config{AccessTTL: ttl, TagTTL: time.Hour}, upstream.Options{})
			d := mt.reg.push("library/app", "1")
			for i, s := range tc.steps {
				mt.clk.Add(s.advance)
				mt.reg.setAnswer(s.answer)
				w := mt.get(strings.ReplaceAll(s.path, "@", d.String()))
				step := tc.steps[i].path
				if s.status == http.StatusOK {
					wantManifest(t, step, w, d)
				} else {
					wantError(t, step, w, s.status, s.code)
				}
				if s.status == http.StatusUnauthorized && len(w.Header().Values("Www-Authenticate")) != 2 {
					t.Errorf("step %d: challenges %q, want a Bearer and a Basic one", i, w.Header().Values("Www-Authenticate"))
				}
				mt.wantUpstream(t, step, s.gets, s.heads)
			}
		})
	}
}

// TestAccessGrantOutlivesRestart opens a second mirror on the same cache,
// as after a restart: the grant on disk lets it serve the default
// identity within the TTL without asking the upstream.
func TestAccessGrantOutlivesRestart(t *testing.T) {
	mt := newManifestTest(t, Config{AccessTTL: time.Minute}, upstream.Options{})
	d := mt.reg.push("library/app", "1")
	wantManifest(t, "cold", mt.get("/v2/app/manifests/1"), d)
	restarted, err := New(Config{Upstreams: []*upstream.Client{mt.m.upstreams[DockerHub]}, Store: mt.m.store, Records: mt.m.records, Now: mt.clk.Now, AccessTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	w := httptestGet(restarted, "/v2/app/manifests/"+d.String())
	wantManifest(t, "after the restart", w, d)
	mt.wantUpstream(t, "after the restart", 1, 0)
	if names, err := restarted.cachedRepositories(); err != nil || len(names) != 1 || names[0] != "library/app" {
		t.Errorf("catalog = %v, %v; want library/app", names, err)
	}
}

// httptestGet sends GET path to m.
func httptestGet(m *Mirror, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}
