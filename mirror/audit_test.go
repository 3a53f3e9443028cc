package mirror

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/regcache/regcache/upstream"
)

// TestAuditOnePerPull sends the requests of pulls and others, and checks
// the audit lines: one per manifest answered by tag (GET or HEAD) or GET
// by digest, with the client, the image and the source, none for the GET
// by digest that completes a HEAD's pull, and none for HEADs by digest,
// errors, blobs, or the mirror's own requests.
func TestAuditOnePerPull(t *testing.T) {
	core, audit := observer.New(zapcore.InfoLevel)
	mt := newManifestTest(t, Config{Audit: zap.New(core), StaleIfError: time.Hour}, upstream.Options{})
	d := mt.reg.push("library/app", "1")
	d2 := mt.reg.push("library/app", "2")
	send := func(method, path string, who *AuditClient) int {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = "192.0.2.7:41000"
		if who != nil {
			r = r.WithContext(WithAuditClient(r.Context(), *who))
		}
		w := httptest.NewRecorder()
		mt.m.ServeHTTP(w, r)
		return w.Code
	}
	type line struct{ clientIP, user, reference, digest, source string }
	tests := []struct {
		name   string
		method string
		path   string
		who    *AuditClient
		before func()
		want   *line
	}{
		{name: "GET by tag, cold", method: http.MethodGet, path: "/v2/app/manifests/1",
			want: &line{"192.0.2.7", "", "1", d.String(), "upstream"}},
		{name: "GET by digest from the cache, site user", method: http.MethodGet, path: "/v2/app/manifests/" + d.String(),
			who:  &AuditClient{Address: "198.51.100.2", User: "alice"},
			want: &line{"198.51.100.2", "alice", d.String(), d.String(), "cache"}},
		{name: "Docker's HEAD by tag is the pull", method: http.MethodHead, path: "/v2/app/manifests/2",
			want: &line{"192.0.2.7", "", "2", d2.String(), "upstream"}},
		{name: "and its GET by digest is not written again", method: http.MethodGet, path: "/v2/app/manifests/" + d2.String()},
		{name: "another client's GET by digest is its own pull", method: http.MethodGet, path: "/v2/app/manifests/" + d2.String(),
			who:  &AuditClient{Address: "198.51.100.3"},
			want: &line{"198.51.100.3", "", d2.String(), d2.String(), "cache"}},
		{name: "a second GET by digest is a pull again", method: http.MethodGet, path: "/v2/app/manifests/" + d2.String(),
			want: &line{"192.0.2.7", "", d2.String(), d2.String(), "cache"}},
		{name: "a site client's HEAD by tag is the pull", method: http.MethodHead, path: "/v2/app/manifests/1",
			who:  &AuditClient{Address: "198.51.100.4", User: "bob"},
			want: &line{"198.51.100.4", "bob", "1", d.String(), "cache"}},
		{name: "and the same client's GET by digest is not written again", method: http.MethodGet, path: "/v2/app/manifests/" + d.String(),
			who: &AuditClient{Address: "198.51.100.4", User: "bob"}},
		{name: "HEAD by digest", method: http.MethodHead, path: "/v2/app/manifests/" + d2.String()},
		{name: "unknown tag", method: http.MethodGet, path: "/v2/app/manifests/nope"},
		{name: "blob", method: http.MethodGet, path: "/v2/app/blobs/" + d.String()},
		{name: "a GET by digest long after the HEAD is a pull", method: http.MethodGet, path: "/v2/app/manifests/" + d.String(),
			before: func() {
				send(http.MethodHead, "/v2/app/manifests/1", nil)
				mt.clk.Add(2 * time.Minute)
			},
			want: &line{"192.0.2.7", "", d.String(), d.String(), "cache"}},
		{name: "stale tag", method: http.MethodGet, path: "/v2/app/manifests/1",
			before: func() { mt.reg.setAnswer(fakeAnswer{503, "UNAVAILABLE"}); mt.clk.Add(DefaultTagTTL) },
			want:   &line{"192.0.2.7", "", "1", d.String(), "stale"}},
	}
	for _, tc := range tests {
		if tc.before != nil {
			tc.before()
		}
		audit.TakeAll()
		send(tc.method, tc.path, tc.who)
		got := audit.TakeAll()
		if tc.want == nil {
			if len(got) != 0 {
				t.Errorf("%s: %d audit lines, want none: %v", tc.name, len(got), got[0].ContextMap())
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("%s: %d audit lines, want 1", tc.name, len(got))
			continue
		}
		f := got[0].ContextMap()
		have := line{f["client_ip"].(string), f["user"].(string), f["reference"].(string), f["digest"].(string), f["source"].(string)}
		if have != *tc.want || f["upstream"] != DockerHub || f["repository"] != "library/app" || got[0].Level != zapcore.InfoLevel {
			t.Errorf("%s: audit line %v, want %+v for docker.io library/app", tc.name, f, *tc.want)
		}
	}
	// The mirror's own requests (warm, sync) are not pulls.
	target, err := mt.m.refTarget(ImageRef{Registry: DockerHub, Repository: "library/app"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mt.m.pullManifest(context.Background(), target, d.String()); err != nil {
		t.Fatal(err)
	}
	if n := audit.Len(); n != 0 {
		t.Errorf("an internal request made %d audit lines", n)
	}
}
