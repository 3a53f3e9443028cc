package records

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
)

// BenchmarkTagLookup measures the lookup of a tag record on a cache hit
// (it was the "tag" part of cache.BenchmarkIndexLookup).
func BenchmarkTagLookup(b *testing.B) {
	s := openTest(b, b.TempDir())
	data := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	d := digest.FromBytes(data)
	if err := s.Put(d, manifestType, data); err != nil {
		b.Fatal(err)
	}
	if err := s.SetTag("docker.io", "library/alpine", "3.19", cache.Tag{Digest: d, MediaType: manifestType,
		Size: int64(len(data)), FetchedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if tg, err := s.Tag("docker.io", "library/alpine", "3.19"); err != nil || tg.Digest != d {
			b.Fatalf("Tag = %v, %v", tg, err)
		}
	}
}
