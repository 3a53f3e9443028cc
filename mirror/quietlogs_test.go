package mirror

import (
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// TestLastingConditionsLoggedOncePerEpisode: an upstream that is down
// fails a thousand requests and serves a thousand stale tags, and the Warn
// lines about it stay a handful, each later one with a count.
func TestLastingConditionsLoggedOncePerEpisode(t *testing.T) {
	mt := newManifestTest(t, Config{}, upstream.Options{})
	d := mt.reg.push("library/app", "1")
	wantManifest(t, "cold", mt.get("/v2/app/manifests/1"), d)
	mt.reg.setAnswer(fakeAnswer{503, "UNAVAILABLE"})
	mt.clk.Add(DefaultTagTTL)
	const requests = 1000
	for range requests {
		mt.clk.Add(100 * time.Millisecond) // 100s in all: a line per minute at most, with the count
		wantError(t, "uncached tag", mt.get("/v2/app/manifests/2"), 502, oci.CodeUnavailable)
		if w := mt.get("/v2/app/manifests/1"); w.Code != 200 {
			t.Fatalf("stale tag: %d", w.Code)
		}
	}
	warns := mt.logs.FilterLevelExact(zapcore.WarnLevel)
	for _, msg := range []string{"requests failed", "serving stale tags: the upstream failed to revalidate them"} {
		lines := warns.FilterMessage(msg).AllUntimed()
		if len(lines) == 0 || len(lines) > 2 {
			t.Errorf("%d Warn lines %q for %d occurrences, want 1 or 2", len(lines), msg, requests)
			continue
		}
		if n, _ := lines[len(lines)-1].ContextMap()["count"].(int64); len(lines) != 2 || n < requests/2 {
			t.Errorf("%q: the second line counts %d occurrences, want at least %d", msg, n, requests/2)
		}
	}
	if n := warns.Len(); n > 4 {
		t.Errorf("%d Warn lines in all for a lasting outage", n)
	}
}
