package records

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
)

func TestLinks(t *testing.T) {
	s := openTest(t, t.TempDir())
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	other := digest.FromString("other")
	if err := s.Put(d, "application/vnd.oci.image.manifest.v1+json", data); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ upstream, repo string }{{"docker.io", "library/a"}, {"docker.io", "library/b"}, {"ghcr.io", "library/a"}} {
		if err := s.Link(l.upstream, l.repo, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Link("docker.io", "library/a", other); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		upstream, repo string
		d              digest.Digest
		want           bool
	}{
		{"linked", "docker.io", "library/a", d, true},
		{"linked to a second repository", "docker.io", "library/b", d, true},
		{"same repository name, other registry", "ghcr.io", "library/a", d, true},
		{"unlinked repository", "docker.io", "library/c", d, false},
		{"unlinked registry", "quay.io", "library/a", d, false},
		{"repository whose name extends a linked one", "docker.io", "library/a/x", d, false},
	}
	for _, tc := range tests {
		if got := s.Linked(tc.upstream, tc.repo, tc.d); got != tc.want {
			t.Errorf("%s: Linked(%s, %s, %s) = %v, want %v", tc.name, tc.upstream, tc.repo, tc.d, got, tc.want)
		}
	}
	// Removing the object drops its links, and only its links.
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		if s.Linked(tc.upstream, tc.repo, d) {
			t.Errorf("%s: still linked after the object was removed", tc.name)
		}
	}
	if !s.Linked("docker.io", "library/a", other) {
		t.Error("removing one object dropped another's link")
	}
}

func TestGrants(t *testing.T) {
	s := openTest(t, t.TempDir())
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if _, err := s.GrantOf("docker.io", "library/a"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("GrantOf before any = %v, want cache.ErrNotFound", err)
	}
	if err := s.SetGrant("docker.io", "library/a", cache.Grant{Identity: "abc", At: at}); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GrantOf("docker.io", "library/a"); err != nil || g.Identity != "abc" || !g.At.Equal(at) {
		t.Errorf("GrantOf = %+v, %v; want identity abc at %s", g, err, at)
	}
	if _, err := s.GrantOf("docker.io", "library/b"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("GrantOf of another repository = %v, want cache.ErrNotFound", err)
	}
	if err := s.DeleteGrant("docker.io", "library/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GrantOf("docker.io", "library/a"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("GrantOf after DeleteGrant = %v, want cache.ErrNotFound", err)
	}
}

// TestLinksGoWithAFileLostInACrash checks that when a restart finds an
// object's record without its file (a crash between removing the two),
// dropping the record drops the object's links too, as any removal does.
func TestLinksGoWithAFileLostInACrash(t *testing.T) {
	dir := t.TempDir()
	r := New()
	c, err := cache.Open(cache.Options{Dir: dir, Dependent: r})
	if err != nil {
		t.Fatal(err)
	}
	lost, dl := seeded(200, 7)
	kept, dk := seeded(100, 8)
	for _, o := range []struct {
		data []byte
		d    digest.Digest
	}{{lost, dl}, {kept, dk}} {
		if err := c.Put(o.d, manifestType, o.data); err != nil {
			t.Fatal(err)
		}
		if err := r.Link("docker.io", "library/a", o.d); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "blobs", "sha256", dl.Encoded())); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	for s.Linked("docker.io", "library/a", dl) {
		if time.Now().After(deadline) {
			t.Fatal("the link of an object whose file was lost outlived the reconciliation at start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := s.Stat(dl); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("Stat of the lost object = %v, want not found", err)
	}
	if !s.Linked("docker.io", "library/a", dk) {
		t.Error("the reconciliation dropped the link of an object still stored")
	}
}
