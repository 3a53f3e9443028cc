package cache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestPutStatReadAll(t *testing.T) {
	s := openTest(t, t.TempDir())
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	tests := []struct {
		name    string
		d       digest.Digest
		data    []byte
		wantErr error
	}{
		{"matching digest", d, data, nil},
		{"again is a no-op", d, data, nil},
		{"wrong digest", digest.FromString("other"), data, ErrDigestMismatch},
		{"unknown algorithm", digest.Digest("md5:0123"), data, ErrDigestMismatch},
	}
	for _, tc := range tests {
		if err := s.Put(tc.d, "application/vnd.oci.image.manifest.v1+json", tc.data); !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: Put = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	if _, err := s.Stat(digest.FromString("other")); !errors.Is(err, ErrNotFound) {
		t.Errorf("rejected content is visible: %v", err)
	}
	s.index.Wait()
	got, obj, err := s.ReadAll(d, 1<<20)
	if err != nil || string(got) != string(data) || obj.Size != int64(len(data)) || obj.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("ReadAll = %q, %+v, %v", got, obj, err)
	}
	f, obj, err := s.Open(d)
	if err != nil || obj.Size != int64(len(data)) {
		t.Fatalf("Open = %+v, %v", obj, err)
	}
	f.Close()
	if _, err := os.Stat(filepath.Join(s.Dir(), "blobs", "sha256", d.Encoded())); err != nil {
		t.Errorf("content is not at blobs/sha256/<hex>: %v", err)
	}
}

func TestReadAllLimitFromDisk(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	data := []byte("0123456789")
	d := digest.FromBytes(data)
	if err := s.Put(d, "", data); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openTest(t, dir)
	if _, _, err := s2.ReadAll(d, 5); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadAll over the limit = %v, want ErrTooLarge", err)
	}
}

func TestRestartKeepsObjectsAndTags(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"mediaType":"x"}`)
	d := digest.FromBytes(data)
	fetched := time.Unix(1_700_000_000, 0).UTC()
	if err := s.Put(d, "application/vnd.docker.distribution.manifest.v2+json", data); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTag("docker.io", "library/alpine", "3.19", Tag{Digest: d, MediaType: "m", Size: 17, FetchedAt: fetched}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadAll(d, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// leftovers of an interrupted download
	if err := os.WriteFile(filepath.Join(dir, "ingest", "partial"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, dir)
	obj, err := s2.Stat(d)
	if err != nil || obj.MediaType != "application/vnd.docker.distribution.manifest.v2+json" || obj.Size != int64(len(data)) {
		t.Errorf("after restart Stat = %+v, %v", obj, err)
	}
	tag, err := s2.Tag("docker.io", "library/alpine", "3.19")
	if err != nil || tag.Digest != d || !tag.FetchedAt.Equal(fetched) {
		t.Errorf("after restart Tag = %+v, %v", tag, err)
	}
	if _, err := s2.Tag("docker.io", "library/alpine", "latest"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown tag: %v", err)
	}
	if _, ok := s2.LastAccess(d); !ok {
		t.Errorf("the last access was not persisted at Close")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "ingest")); len(entries) != 0 {
		t.Errorf("ingest/ leftovers not removed at Open: %d entries", len(entries))
	}
}

func TestDiskIsTheTruth(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	// a file without metadata (copied in by hand) is served
	data := []byte("hand-copied")
	d := digest.FromBytes(data)
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if obj, err := s.Stat(d); err != nil || obj.Size != int64(len(data)) || obj.MediaType != "" {
		t.Errorf("file without metadata: %+v, %v", obj, err)
	}
	// metadata without a file (a crash between the two) is absent
	ghost := digest.FromString("ghost")
	if err := s.writeObjectMeta(Object{Digest: ghost, Size: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ghost); !errors.Is(err, ErrNotFound) {
		t.Errorf("metadata without a file: %v, want ErrNotFound", err)
	}
}

func TestSecondOpenFailsClearly(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir)
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Errorf("a second Open of an open cache succeeded")
	}
}

func BenchmarkStatHit(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := []byte("blob")
	d := digest.FromBytes(data)
	_ = s.Put(d, "", data)
	s.index.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Stat(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadAllHit(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 2048)
	d := digest.FromBytes(data)
	_ = s.Put(d, "application/vnd.oci.image.manifest.v1+json", data)
	s.index.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.ReadAll(d, 4<<20); err != nil {
			b.Fatal(err)
		}
	}
}
