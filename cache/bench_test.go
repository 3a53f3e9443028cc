package cache

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// BenchmarkIndexLookup measures the lookups of a cache hit besides Stat and
// ReadAll (BenchmarkStatHit, BenchmarkReadAllHit): a blob opened for
// sending (Open and Close), a tag record, and Stat from every core at once.
func BenchmarkIndexLookup(b *testing.B) {
	s := openTest(b, b.TempDir())
	data := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	d := digest.FromBytes(data)
	if err := s.Put(d, manifestType, data); err != nil {
		b.Fatal(err)
	}
	if err := s.SetTag("docker.io", "library/alpine", "3.19", Tag{Digest: d, MediaType: manifestType,
		Size: int64(len(data)), FetchedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	s.index.Wait()
	if _, ok := s.lookup(d); !ok {
		b.Fatal("the object is not in the hot index")
	}
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := s.Open(context.Background(), d)
			if err != nil {
				b.Fatal(err)
			}
			_ = r.Close()
		}
	})
	b.Run("tag", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tg, err := s.Tag("docker.io", "library/alpine", "3.19"); err != nil || tg.Digest != d {
				b.Fatalf("Tag = %v, %v", tg, err)
			}
		}
	})
	b.Run("stat parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Stat(d); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkFillLarge measures a cold 128 MiB fill from an in-memory body
// until it is verified and stored (hashing, writing, fsync and rename), as
// a client waiting for the last byte sees it.
func BenchmarkFillLarge(b *testing.B) {
	const size = 128 << 20
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i * 7)
	}
	d := digest.FromBytes(body)
	s := openTest(b, b.TempDir())
	b.SetBytes(size)
	for b.Loop() {
		r, err := s.Fill(b.Context(), d, fetchOf(body, size, nil))
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Wait(b.Context()); err != nil {
			b.Fatal(err)
		}
		_ = r.Close()
		b.StopTimer()
		if err := s.Delete(d); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkScrub measures a scrub pass over 64 MiB in 16 blobs: unbounded
// (what the disk and SHA-256 allow) and paced at the default rate, which
// should come out at DefaultScrubRate.
func BenchmarkScrub(b *testing.B) {
	const blobs, blobSize = 16, 4 << 20
	s := openTestWith(b, Options{Dir: b.TempDir(), ScrubInterval: -1})
	for i := range blobs {
		data := make([]byte, blobSize)
		for j := range data {
			data[j] = byte(i + j*31)
		}
		if err := s.Put(digest.FromBytes(data), "application/octet-stream", data); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name string
		rate int64
	}{
		{"unbounded", -1},
		{"default rate", DefaultScrubRate},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(blobs * blobSize)
			for b.Loop() {
				if err := s.scrubPass(context.Background(), bc.rate); err != nil {
					b.Fatal(err)
				}
			}
			if n := s.IntegrityStats().CorruptObjects; n != 0 {
				b.Fatalf("%d corrupt objects", n)
			}
		})
	}
}
