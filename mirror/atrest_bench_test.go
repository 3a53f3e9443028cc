package mirror

import (
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"
)

// BenchmarkCachedBlobGET measures a warm whole-blob GET over loopback
// HTTP, in one run: sent with sendfile as before content at rest was
// checked (serveFile), with sendfile and the held-back last byte of a
// verified blob (serveChecked, every read after the first), and hashed
// as it is sent (serveVerifying, the first read after a start); and
// through serveCached as the blobs endpoint does, verified, with no Range
// (sendfile) and with a Range it ignores (bytes=5-1: settled first, then
// sendfile).
func BenchmarkCachedBlobGET(b *testing.B) {
	const size = 64 << 20
	m := newTestMirror(b, "", "docker.io")
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	d := digest.FromBytes(blob)
	if err := m.store.Put(d, blobContentType, blob); err != nil {
		b.Fatal(err)
	}
	// The blob is in the page cache from Put: every case reads it from
	// memory, as a warm cache serves a popular layer.
	for _, name := range []string{"sendfile before", "verified sendfile", "first read hashed", "serveCached", "serveCached ignored range"} {
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rd, err := m.store.Open(r.Context(), d)
				if err != nil {
					b.Error(err)
					return
				}
				defer rd.Close()
				switch name {
				case "sendfile before":
					m.serveFile(w, r, rd.File(), d, rd.Size())
				case "verified sendfile":
					m.serveChecked(w, r, rd.File(), d, rd.Size())
				case "serveCached", "serveCached ignored range":
					m.serveCached(w, r, rd, d)
				default:
					m.serveVerifying(w, r, rd.File(), d, rd.Size())
				}
			}))
			defer srv.Close()
			client := srv.Client()
			b.SetBytes(size)
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				if name == "serveCached ignored range" {
					req.Header.Set("Range", "bytes=5-1")
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size || resp.StatusCode != http.StatusOK {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}
