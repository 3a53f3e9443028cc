package mirror

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

// nullWriter is a ResponseWriter that drops everything, for benchmarks.
type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) WriteHeader(int)             {}
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkManifestHit measures a warm manifest request through the whole
// handler: routing, validation, access to the hot index, and the answer.
func BenchmarkManifestHit(b *testing.B) {
	m := newTestMirror(b, "", "docker.io")
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	d := digest.FromBytes(body)
	if err := m.store.Put(d, oci.MediaTypeOCIManifest, body); err != nil {
		b.Fatal(err)
	}
	if err := m.records.SetTag("docker.io", "library/alpine", "3.19", cache.Tag{Digest: d, MediaType: oci.MediaTypeOCIManifest,
		Size: int64(len(body)), FetchedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	// The upstream served it under this repository to anonymous clients.
	if err := m.records.Link("docker.io", "library/alpine", d); err != nil {
		b.Fatal(err)
	}
	if err := m.records.SetGrant("docker.io", "library/alpine", cache.Grant{At: time.Now()}); err != nil {
		b.Fatal(err)
	}
	// The audit log as Caddy writes it: JSON lines, here to nowhere.
	audit := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	for _, bc := range []struct {
		name, path string
		audited    bool
	}{
		{"by digest", "/v2/library/alpine/manifests/" + d.String(), false},
		{"by fresh tag", "/v2/alpine/manifests/3.19", false},
		{"by fresh tag, audited", "/v2/alpine/manifests/3.19", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.audited {
				m.cfg.Audit = audit
				defer func() { m.cfg.Audit = nil }()
			}
			req, err := http.NewRequest(http.MethodGet, bc.path, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Accept", oci.MediaTypeOCIManifest)
			rec := httptest.NewRecorder()
			m.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Header().Get(oci.ContentDigestHeader) != d.String() {
				b.Fatalf("GET %s: %d %s", bc.path, rec.Code, rec.Body)
			}
			w := &nullWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				m.ServeHTTP(w, req)
			}
		})
	}
}
