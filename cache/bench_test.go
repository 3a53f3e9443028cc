package cache

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

// BenchmarkColdFillLoopback compares, side by side in one run, a cold fill
// of a 512 MiB blob from a loopback HTTP server (until a client read its
// last byte, verified and stored) with a plain download of it to a file
// (fsync included), and with the fill split over several connections.
func BenchmarkColdFillLoopback(b *testing.B) {
	const size = 512 << 20
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*7 + i>>13)
	}
	d := digest.FromBytes(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	b.Cleanup(srv.Close)
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(size)
		dir := b.TempDir()
		for b.Loop() {
			resp, err := http.Get(srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Create(filepath.Join(dir, "blob"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	for _, tc := range []struct {
		name   string
		conns  int
		after  time.Duration // the split delay; 0: the default
		inline bool          // hash on the copying goroutine
	}{
		{"fill-1conn-inline-hash", 1, 0, true},
		{"fill-1conn", 1, 0, false},
		{"fill-4conn-default", 4, 0, false},
		{"fill-4conn-forced", 4, time.Nanosecond, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := openTestWith(b, Options{Dir: b.TempDir(), FillConnections: tc.conns, FillSplitAfter: tc.after})
			s.inlineHash = tc.inline
			fetch := func(ctx context.Context, off int64) (Source, error) {
				var src Source
				var err error
				if off == 0 && s.SplitSize() > 0 {
					src, err = firstRangeFetch(ctx, srv.URL, s.SplitSize())
				} else {
					src, err = httpFetch(srv.URL)(ctx, off)
				}
				src.Segment = httpSegment(srv.URL, size)
				return src, err
			}
			b.SetBytes(size)
			readBuf := make([]byte, 1<<20)
			for b.Loop() {
				r, err := s.Fill(b.Context(), d, fetch)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, readBuf); err != nil || n != size {
					b.Fatalf("read %d bytes, %v", n, err)
				}
				_ = r.Close()
				b.StopTimer()
				waitFillsDone(b, s)
				if err := s.Delete(d); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
