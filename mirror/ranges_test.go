package mirror

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/oci"
)

// rangeCase is one request of the range table and its answer.
type rangeCase struct {
	name         string
	size         int // of the content: 0 or 10
	header       map[string]string
	status       int
	body         string // for 200 and 206
	contentRange string
}

// rangeCases walk RFC 9110's range rules over a 10-byte and an empty
// representation whose ETag is etag.
func rangeCases(etag string) []rangeCase {
	const ten = "0123456789"
	return []rangeCase{
		{"no range", 10, nil, 200, ten, ""},
		{"first bytes", 10, map[string]string{"Range": "bytes=0-1"}, 206, "01", "bytes 0-1/10"},
		{"open range", 10, map[string]string{"Range": "bytes=7-"}, 206, "789", "bytes 7-9/10"},
		{"suffix", 10, map[string]string{"Range": "bytes=-3"}, 206, "789", "bytes 7-9/10"},
		{"suffix longer than the content", 10, map[string]string{"Range": "bytes=-30"}, 206, ten, "bytes 0-9/10"},
		{"last-pos past the end", 10, map[string]string{"Range": "bytes=8-100"}, 206, "89", "bytes 8-9/10"},
		{"unit in capitals", 10, map[string]string{"Range": "BYTES=0-1"}, 206, "01", "bytes 0-1/10"},
		{"unsatisfiable range dropped among others", 10, map[string]string{"Range": "bytes=50-60, 2-3"}, 206, "23", "bytes 2-3/10"},
		{"unknown unit ignored", 10, map[string]string{"Range": "items=0-1"}, 200, ten, ""},
		{"last-pos before first-pos ignored", 10, map[string]string{"Range": "bytes=100-50"}, 200, ten, ""},
		{"garbage ignored", 10, map[string]string{"Range": "bytes=a-b"}, 200, ten, ""},
		{"no equals sign ignored", 10, map[string]string{"Range": "bytes"}, 200, ten, ""},
		{"empty set ignored", 10, map[string]string{"Range": "bytes=,"}, 200, ten, ""},
		{"negative ignored", 10, map[string]string{"Range": "bytes=-1-2"}, 200, ten, ""},
		{"first-pos at the end", 10, map[string]string{"Range": "bytes=10-"}, 416, "", "bytes */10"},
		{"first-pos past the end", 10, map[string]string{"Range": "bytes=100-200"}, 416, "", "bytes */10"},
		{"zero suffix", 10, map[string]string{"Range": "bytes=-0"}, 416, "", "bytes */10"},
		{"If-Range of another entity", 10, map[string]string{"Range": "bytes=100-", "If-Range": `"sha256:other"`}, 200, ten, ""},
		{"If-Range of this entity", 10, map[string]string{"Range": "bytes=0-1", "If-Range": etag}, 206, "01", "bytes 0-1/10"},
		{"precondition before range", 10, map[string]string{"Range": "bytes=100-", "If-None-Match": etag}, 304, "", ""},
		{"If-Match of another entity", 10, map[string]string{"If-Match": `"sha256:other"`}, 412, "", ""},
		{"empty: suffix", 0, map[string]string{"Range": "bytes=-1"}, 200, "", ""},
		{"empty: first byte", 0, map[string]string{"Range": "bytes=0-0"}, 416, "", "bytes */0"},
		{"empty: open range", 0, map[string]string{"Range": "bytes=0-"}, 416, "", "bytes */0"},
		{"empty: unknown unit", 0, map[string]string{"Range": "items=0-1"}, 200, "", ""},
	}
}

// checkRangeAnswer fails the test unless w answers tc.
func checkRangeAnswer(t *testing.T, w *httptest.ResponseRecorder, tc rangeCase) {
	t.Helper()
	if w.Code != tc.status {
		t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tc.status)
	}
	if got := w.Header().Get("Content-Range"); got != tc.contentRange {
		t.Errorf("Content-Range %q, want %q", got, tc.contentRange)
	}
	switch {
	case tc.status >= 400:
		var body oci.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) == 0 {
			t.Errorf("error body %q is not OCI error JSON", w.Body)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("error Content-Type %q", ct)
		}
	case tc.status == 304:
	default:
		want := tc.body
		if tc.size == 0 {
			want = ""
		}
		if w.Body.String() != want {
			t.Errorf("body %q, want %q", w.Body, want)
		}
		if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(len(want)) {
			t.Errorf("Content-Length %q, want %d", cl, len(want))
		}
	}
}

func TestRangesOfCachedBlobs(t *testing.T) {
	m := &Mirror{log: zap.NewNop()}
	for _, size := range []int{0, 10} {
		content := "0123456789"[:size]
		d := digest.FromString(content)
		path := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range rangeCases(`"` + d.String() + `"`) {
			if tc.size != size {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				r := httptest.NewRequest(http.MethodGet, "/v2/a/blobs/"+d.String(), nil)
				for k, v := range tc.header {
					r.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				m.serveFile(w, r, f, d, int64(size))
				checkRangeAnswer(t, w, tc)
			})
		}
	}
}

func TestRangesOfManifests(t *testing.T) {
	for _, size := range []int{0, 10} {
		content := []byte("0123456789"[:size])
		mc := manifestContent{digest: digest.FromBytes(content), mediaType: oci.MediaTypeOCIManifest, data: content}
		for _, tc := range rangeCases(`"` + mc.digest.String() + `"`) {
			if tc.size != size {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodGet, "/v2/a/manifests/"+mc.digest.String(), nil)
				for k, v := range tc.header {
					r.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				writeManifest(w, r, mc)
				checkRangeAnswer(t, w, tc)
			})
		}
	}
}

func TestSettleRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		size int64
		want string
	}{
		{"", 10, ""},
		{"bytes=0-1", 10, "bytes=0-1"},
		{"bytes= 0-1 , 5-", 10, "bytes=0-1,5-"},
		{"bytes=-0,0-0", 10, "bytes=0-0"},
		{"bytes=20-,30-", 10, "bytes=10-"},
		{"items=0-1", 10, ""},
		{"bytes=3-2", 10, ""},
		{"bytes=-1", 0, ""},
		{"bytes=0-", 0, "bytes=0-"},
	} {
		if got := settleRange(tc.in, tc.size); got != tc.want {
			t.Errorf("settleRange(%q, %d) = %q, want %q", tc.in, tc.size, got, tc.want)
		}
	}
}
