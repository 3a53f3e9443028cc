package cache

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestFileWithoutMetadataIsServed(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	data := []byte("copied in by hand")
	d := digest.FromBytes(data)
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := Object{Digest: d, Size: int64(len(data))}
	if obj, err := s.Stat(d); err != nil || obj != want {
		t.Errorf("Stat = %+v, %v; want %+v", obj, err, want)
	}
	s.index.Clear()
	if got, obj, err := s.ReadAll(d, 100); err != nil || string(got) != string(data) || obj != want {
		t.Errorf("ReadAll = %q, %+v, %v", got, obj, err)
	}
	r, err := s.Fill(t.Context(), d, func(context.Context, int64) (Source, error) {
		t.Error("fetch called for a stored object")
		return Source{}, errors.New("unexpected")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := io.ReadAll(r); err != nil || string(got) != string(data) || !r.Complete() {
		t.Errorf("Fill of a stored file = %q, %v, complete %v", got, err, r.Complete())
	}
}

func TestMetadataWithoutFileIsAbsent(t *testing.T) {
	s := openTest(t, t.TempDir())
	// What a crash between writing the metadata and the rename leaves.
	ghost := digest.FromString("ghost")
	if err := s.writeObjectMeta(Object{Digest: ghost, Size: 5, MediaType: manifestType}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ghost); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	if _, err := s.Open(context.Background(), ghost); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open = %v, want ErrNotFound", err)
	}
	if _, _, err := s.ReadAll(ghost, 100); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadAll = %v, want ErrNotFound", err)
	}
}

func TestDelete(t *testing.T) {
	s := openTest(t, t.TempDir())
	data := []byte("to be evicted")
	d := digest.FromBytes(data)
	if err := s.Put(d, manifestType, data); err != nil {
		t.Fatal(err)
	}
	s.index.Wait()
	f, err := s.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Delete(d); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if _, ok := s.readObjectMeta(d); ok {
		t.Errorf("metadata left after Delete")
	}
	if got, err := io.ReadAll(f); err != nil || string(got) != string(data) {
		t.Errorf("a file opened before Delete reads %q, %v", got, err)
	}
	if err := s.Delete(d); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	if err := s.Put(d, manifestType, data); err != nil {
		t.Errorf("Put after Delete = %v", err)
	}
}
