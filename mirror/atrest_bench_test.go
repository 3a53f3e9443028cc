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
// as it is sent (serveVerifying, the first read after a start).
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
	for _, name := range []string{"sendfile before", "verified sendfile", "first read hashed"} {
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
				default:
					m.serveVerifying(w, r, rd.File(), d, rd.Size())
				}
			}))
			defer srv.Close()
			client := srv.Client()
			b.SetBytes(size)
			for b.Loop() {
				resp, err := client.Get(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}
