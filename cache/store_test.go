package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

const manifestType = "application/vnd.oci.image.manifest.v1+json"

// openTest opens a store in dir that the test closes at its end.
func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	return openTestWith(t, Options{Dir: dir})
}

// openTestWith opens a store with opts that the test closes at its end.
func openTestWith(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.FillRetryBackoff == 0 {
		// Attempts of fills whose bodies break follow each other quickly.
		opts.FillRetryBackoff = time.Millisecond
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// dirEntries lists the names under dir, recursively, relative to it.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestPutStatReadAllOpen(t *testing.T) {
	small := []byte(`{"schemaVersion":2}`)
	big := make([]byte, 10_000) // above the inline limit used below
	tests := []struct {
		name      string
		data      []byte
		mediaType string
	}{
		{"manifest kept inline", small, manifestType},
		{"object above the inline limit", big, "application/octet-stream"},
		{"no media type", []byte("plain"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestWith(t, Options{Dir: t.TempDir(), InlineLimit: 4096})
			d := digest.FromBytes(tc.data)
			want := Object{Digest: d, Size: int64(len(tc.data)), MediaType: tc.mediaType}
			if err := s.Put(d, tc.mediaType, tc.data); err != nil {
				t.Fatalf("Put: %v", err)
			}
			// Twice: through the index (after Wait) and from disk.
			for _, fresh := range []bool{false, true} {
				if fresh {
					s.index.Clear()
				}
				s.index.Wait()
				if obj, err := s.Stat(d); err != nil || obj != want {
					t.Errorf("Stat (index cleared %v) = %+v, %v; want %+v", fresh, obj, err, want)
				}
				got, obj, err := s.ReadAll(d, 1<<20)
				if err != nil || string(got) != string(tc.data) || obj != want {
					t.Errorf("ReadAll (index cleared %v) = %d bytes, %+v, %v", fresh, len(got), obj, err)
				}
				r, err := s.Open(context.Background(), d)
				if err != nil || r.Size() != want.Size || r.MediaType() != want.MediaType || !r.Complete() {
					t.Fatalf("Open (index cleared %v) = %v; want %+v", fresh, err, want)
				}
				fi, err := r.File().Stat()
				r.Close()
				if err != nil || fi.Size() != want.Size {
					t.Errorf("opened file: %v, %v", fi, err)
				}
			}
			if _, err := os.Stat(filepath.Join(s.Dir(), "blobs", "sha256", d.Encoded())); err != nil {
				t.Errorf("content is not at blobs/sha256/<hex>: %v", err)
			}
		})
	}
}

func TestPutRejectsWrongDigest(t *testing.T) {
	data := []byte(`{"schemaVersion":2}`)
	tests := []struct {
		name string
		d    digest.Digest
	}{
		{"digest of other content", digest.FromString("other")},
		{"sha512 of other content", digest.SHA512.FromString("other")},
		{"unknown algorithm", digest.Digest("md5:0123456789abcdef0123456789abcdef")},
		{"malformed", digest.Digest("sha256:../../escape")},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			if err := s.Put(tc.d, manifestType, data); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("Put(%q) = %v, want ErrDigestMismatch", tc.d, err)
			}
			if _, err := s.Stat(tc.d); err == nil {
				t.Errorf("rejected content is visible")
			}
			if names := dirEntries(t, filepath.Join(s.Dir(), "blobs")); len(names) != 0 {
				t.Errorf("blobs/ holds %v after a rejected Put", names)
			}
			if names := dirEntries(t, filepath.Join(s.Dir(), "ingest")); len(names) != 0 {
				t.Errorf("ingest/ holds %v after a rejected Put", names)
			}
			if _, ok := s.readObjectMeta(tc.d); ok {
				t.Errorf("a rejected Put left metadata")
			}
		})
	}
}

func TestPutMediaType(t *testing.T) {
	data := []byte("manifest")
	d := digest.FromBytes(data)
	tests := []struct {
		name        string
		first, then string
		want        string
	}{
		{"empty is refreshed", "", manifestType, manifestType},
		{"known is kept", manifestType, "application/other", manifestType},
		{"empty again keeps the known one", manifestType, "", manifestType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Put(d, tc.first, data); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(d, tc.then, data); err != nil {
				t.Fatal(err)
			}
			s.index.Wait()
			if obj, err := s.Stat(d); err != nil || obj.MediaType != tc.want {
				t.Errorf("Stat = %+v, %v; want media type %q", obj, err, tc.want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTest(t, dir)
			if obj, err := s.Stat(d); err != nil || obj.MediaType != tc.want {
				t.Errorf("after restart Stat = %+v, %v; want media type %q", obj, err, tc.want)
			}
		})
	}
}

func TestReadAllLimit(t *testing.T) {
	data := []byte("0123456789")
	d := digest.FromBytes(data)
	tests := []struct {
		name    string
		clear   bool // read from disk rather than the index
		limit   int64
		wantErr error
	}{
		{"inline, under", false, 100, nil},
		{"inline, exact", false, 10, nil},
		{"inline, over", false, 5, ErrTooLarge},
		{"disk, under", true, 100, nil},
		{"disk, over", true, 9, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			if err := s.Put(d, "", data); err != nil {
				t.Fatal(err)
			}
			s.index.Wait()
			if tc.clear {
				s.index.Clear()
			}
			got, _, err := s.ReadAll(d, tc.limit)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadAll(limit %d) = %v, want %v", tc.limit, err, tc.wantErr)
			}
			if err == nil && string(got) != string(data) {
				t.Errorf("ReadAll = %q", got)
			}
		})
	}
}

func TestRestartKeepsObjects(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"mediaType":"x"}`)
	d := digest.FromBytes(data)
	const mt = "application/vnd.docker.distribution.manifest.v2+json"
	if err := s.Put(d, mt, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Leftovers of a download interrupted by a crash.
	for _, name := range []string{"partial", "sub/deeper"} {
		p := filepath.Join(dir, "ingest", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2 := openTest(t, dir)
	if obj, err := s2.Stat(d); err != nil || obj != (Object{Digest: d, Size: int64(len(data)), MediaType: mt}) {
		t.Errorf("after restart Stat = %+v, %v", obj, err)
	}
	if names := dirEntries(t, filepath.Join(dir, "ingest")); len(names) != 0 {
		t.Errorf("ingest/ leftovers not removed at Open: %v", names)
	}
}

func TestSecondOpenFailsClearly(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	s, err := Open(Options{Dir: dir})
	if err == nil {
		s.Close()
		t.Fatal("a second Open of an open cache succeeded")
	}
	if !errors.Is(err, bolt.ErrTimeout) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open: %v; want an error that says the directory is in use", err)
	}
}

func TestOpenNeedsADirectory(t *testing.T) {
	if s, err := Open(Options{}); err == nil {
		s.Close()
		t.Error("Open without a directory succeeded")
	}
}

func TestInvalidDigestsNameNoPath(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, filepath.Join(dir, "cache"))
	// A file a path-traversing digest would reach.
	outside := filepath.Join(dir, "cache", "blobs", "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := []digest.Digest{"sha256:../secret", "sha256:", "nonsense", "sha256:ABC"}
	for _, d := range bad {
		if _, err := s.Stat(d); err == nil {
			t.Errorf("Stat(%q) succeeded", d)
		}
		if r, err := s.Open(context.Background(), d); err == nil {
			r.Close()
			t.Errorf("Open(%q) succeeded", d)
		}
		if _, _, err := s.ReadAll(d, 100); err == nil {
			t.Errorf("ReadAll(%q) succeeded", d)
		}
		if r, err := s.Fill(t.Context(), d, fetchOf([]byte("secret"), 6, nil)); err == nil {
			r.Close()
			t.Errorf("Fill(%q) succeeded", d)
		}
		if err := s.Delete(d); err == nil {
			t.Errorf("Delete(%q) succeeded", d)
		}
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the file outside blobs/<alg>/ was touched: %v", err)
	}
}

func TestClosedStore(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("x")
	d := digest.FromBytes(data)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	checks := map[string]error{}
	_, checks["Stat"] = s.Stat(d)
	_, checks["Open"] = s.Open(context.Background(), d)
	_, _, checks["ReadAll"] = s.ReadAll(d, 10)
	checks["Put"] = s.Put(d, "", data)
	checks["Delete"] = s.Delete(d)
	_, checks["Fill"] = s.Fill(t.Context(), d, fetchOf(data, 1, nil))
	for op, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
}

func TestCloseWhileInUse(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("busy")
	d := digest.FromBytes(data)
	if err := s.Put(d, "", data); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				_, err := s.Stat(d)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Stat while open = %v", err)
					return
				}
				if _, _, err := s.ReadAll(d, 10); err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("ReadAll while open = %v", err)
					return
				}
			}
		}()
	}
	close(start)
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	wg.Wait() // every user saw ErrClosed; nothing used the closed index
}

func BenchmarkStatHit(b *testing.B) {
	s := openTest(b, b.TempDir())
	data := []byte("blob")
	d := digest.FromBytes(data)
	if err := s.Put(d, "", data); err != nil {
		b.Fatal(err)
	}
	s.index.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Stat(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadAllHit(b *testing.B) {
	s := openTest(b, b.TempDir())
	data := make([]byte, 2048)
	d := digest.FromBytes(data)
	if err := s.Put(d, manifestType, data); err != nil {
		b.Fatal(err)
	}
	s.index.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.ReadAll(d, 4<<20); err != nil {
			b.Fatal(err)
		}
	}
}
