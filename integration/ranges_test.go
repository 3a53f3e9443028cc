package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/regcache/regcache/integration/hubtest"
	"github.com/regcache/regcache/oci"
)

// TestRangeEdges: Range headers of a blob follow RFC 9110 through Caddy,
// for a blob whose fill is in progress (the first request, over a slowed
// CDN) and for the cached blob: an unknown unit or an invalid range is
// ignored (200), an unsatisfiable one is 416 with Content-Range: bytes */N
// and an OCI error body.
func TestRangeEdges(t *testing.T) {
	m := startMirror(t, siteOptions{})
	tests := []struct {
		name   string
		rng    func(size string) string
		status int
		// length is the body length: the whole blob (-1) or a range.
		length       int64
		contentRange func(size string) string
	}{
		{"unknown unit", func(string) string { return "items=0-1" }, 200, -1, func(string) string { return "" }},
		{"last-pos before first-pos", func(string) string { return "bytes=100-50" }, 200, -1, func(string) string { return "" }},
		{"satisfiable", func(string) string { return "bytes=0-1" }, 206, 2, func(n string) string { return "bytes 0-1/" + n }},
		{"unsatisfiable", func(n string) string { return "bytes=" + n + "-" }, 416, 0, func(n string) string { return "bytes */" + n }},
	}
	for i, tc := range tests {
		// A blob of its own per case: the first request joins its fill
		// (over a slowed CDN), the second finds it cached.
		img, _, err := hub.PushImage("library/ranges", strconv.Itoa(i), 1, 256<<10, false)
		if err != nil {
			t.Fatal(err)
		}
		h := firstLayer(t, img)
		l, err := img.LayerByDigest(h)
		if err != nil {
			t.Fatal(err)
		}
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		n := strconv.FormatInt(size, 10)
		rng, contentRange, length := tc.rng(n), tc.contentRange(n), tc.length
		if length < 0 {
			length = size
		}
		path := "/v2/ranges/blobs/" + h.String()
		for _, phase := range []string{"fill", "cached"} {
			t.Run(phase+"/"+tc.name, func(t *testing.T) {
				if phase == "fill" {
					hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 2 << 20})
					defer hub.SetFault(hubtest.Fault{})
				}
				resp := m.do(t, http.MethodGet, path, "Range: "+rng)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != contentRange {
					t.Fatalf("Range %s: %d Content-Range %q, want %d %q", rng, resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, contentRange)
				}
				if tc.status < 400 && int64(len(body)) != length {
					t.Errorf("Range %s: %d bytes, want %d", rng, len(body), length)
				}
				if tc.status >= 400 {
					var eb oci.ErrorBody
					if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
						t.Errorf("Range %s: error body %q is not OCI error JSON", rng, body)
					}
				}
			})
		}
	}
}

// TestRangeEdgesPastTheCache: a blob larger than the cache budget is
// streamed from the upstream without storing; an unknown range unit is
// ignored there too (200, the whole blob), and a valid range is relayed.
func TestRangeEdgesPastTheCache(t *testing.T) {
	img, _, err := hub.PushImage("library/rangesbig", "1", 1, 256<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	h := firstLayer(t, img)
	l, err := img.LayerByDigest(h)
	if err != nil {
		t.Fatal(err)
	}
	size, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "max_size 64KiB"})
	path := "/v2/rangesbig/blobs/" + h.String()
	for _, tc := range []struct {
		rng    string
		status int
		length int64
	}{
		{"items=0-1", 200, size},
		{"bytes=100-50", 200, size},
		{"bytes=0-1", 206, 2},
	} {
		resp := m.do(t, http.MethodGet, path, "Range: "+tc.rng)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.status || int64(len(body)) != tc.length {
			t.Errorf("Range %s past the cache: %d, %d bytes, %v; want %d, %d bytes", tc.rng, resp.StatusCode, len(body), err, tc.status, tc.length)
		}
	}
}
