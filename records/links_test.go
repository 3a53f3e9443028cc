package records

import (
	"errors"
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
