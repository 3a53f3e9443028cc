package mirror

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regcache/regcache/oci"
)

func TestRequestCounters(t *testing.T) {
	tests := []struct {
		name       string
		kind       oci.Kind
		src        source
		failed     bool
		bytes      int64
		wantKind   string
		wantResult string
		fromCache  int64
		fromUp     int64
	}{
		{"manifest from the cache", oci.KindManifest, sourceCache, false, 100, "manifest", "hit", 100, 0},
		{"blob fetched", oci.KindBlob, sourceUpstream, false, 1000, "blob", "miss", 0, 1000},
		{"stale tag", oci.KindManifest, sourceStale, false, 50, "manifest", "stale", 50, 0},
		{"failed tags list", oci.KindTags, sourceUpstream, true, 80, "tags", "error", 0, 0},
		{"referrers", oci.KindReferrers, sourceUpstream, false, 10, "referrers", "miss", 0, 10},
		{"catalog is not counted", oci.KindCatalog, sourceCache, false, 10, "", "", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c requestCounters
			c.count(tc.kind, tc.src, tc.failed, tc.bytes)
			var counted []string
			for _, rc := range c.counts() {
				if rc.Count > 0 {
					counted = append(counted, rc.Kind+"/"+rc.Result)
				}
			}
			want := ""
			if tc.wantKind != "" {
				want = tc.wantKind + "/" + tc.wantResult
			}
			if got := strings.Join(counted, ","); got != want {
				t.Errorf("counted %q, want %q", got, want)
			}
			if c.bytesFromCache.Load() != tc.fromCache || c.bytesFromUpstream.Load() != tc.fromUp {
				t.Errorf("bytes from cache %d, from upstream %d; want %d, %d",
					c.bytesFromCache.Load(), c.bytesFromUpstream.Load(), tc.fromCache, tc.fromUp)
			}
		})
	}
}

// readFromRecorder is a ResponseWriter that records whether its ReadFrom
// was used (the sendfile path).
type readFromRecorder struct {
	*httptest.ResponseRecorder
	usedReadFrom bool
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.usedReadFrom = true
	return io.Copy(r.ResponseRecorder, src)
}

func TestCountingWriterKeepsReadFrom(t *testing.T) {
	rec := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	cw := &countingWriter{ResponseWriter: rec}
	n, err := cw.ReadFrom(bytes.NewReader(make([]byte, 5000)))
	if err != nil || n != 5000 || cw.n != 5000 || !rec.usedReadFrom {
		t.Errorf("ReadFrom = %d, %v; counted %d, wrapped ReadFrom used %v", n, err, cw.n, rec.usedReadFrom)
	}
	if _, err := cw.Write([]byte("abc")); err != nil || cw.n != 5003 || cw.status != http.StatusOK {
		t.Errorf("Write: counted %d, status %d, %v", cw.n, cw.status, err)
	}
	if http.NewResponseController(cw).Flush() != nil {
		t.Error("Flush through the counting writer failed")
	}
}

func TestStatsPulls(t *testing.T) {
	tests := []struct {
		name              string
		requests          []RequestCount
		fromCache, fromUp int64
		ratio             float64
	}{
		{"none", nil, 0, 0, 0},
		{"hits and stale tags count as the cache's", []RequestCount{{"manifest", "hit", 3}, {"blob", "stale", 1}, {"blob", "miss", 4}}, 4, 4, 0.5},
		{"lists and errors are not pulls", []RequestCount{{"tags", "hit", 7}, {"referrers", "miss", 2}, {"blob", "error", 9}, {"manifest", "hit", 1}}, 1, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Stats{Requests: tc.requests}
			fromCache, fromUp := s.Pulls()
			if fromCache != tc.fromCache || fromUp != tc.fromUp || s.HitRatio() != tc.ratio {
				t.Errorf("Pulls() = %d, %d, HitRatio() = %v; want %d, %d, %v", fromCache, fromUp, s.HitRatio(), tc.fromCache, tc.fromUp, tc.ratio)
			}
		})
	}
}
