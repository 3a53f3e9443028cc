package records

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
)

func TestTags(t *testing.T) {
	s := openTest(t, t.TempDir())
	at := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	a := cache.Tag{Digest: digest.FromString("a"), MediaType: manifestType, Size: 10, FetchedAt: at}
	b := cache.Tag{Digest: digest.FromString("b"), MediaType: "application/vnd.oci.image.index.v1+json", Size: 20, FetchedAt: at.Add(time.Hour)}
	sets := []struct{ upstream, repo, tag string }{
		{"docker.io", "library/alpine", "3"},
		{"ghcr.io", "library/alpine", "3"},
		{"docker.io", "library/alpine", "latest"},
	}
	for i, k := range sets {
		v := a
		if i == 2 {
			v = b
		}
		if err := s.SetTag(k.upstream, k.repo, k.tag, v); err != nil {
			t.Fatal(err)
		}
	}
	// Overwriting replaces the record.
	if err := s.SetTag("ghcr.io", "library/alpine", "3", b); err != nil {
		t.Fatal(err)
	}
	// Deleting removes one record; deleting what is missing is no error.
	if err := s.SetTag("docker.io", "library/alpine", "gone", a); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.DeleteTag("docker.io", "library/alpine", "gone"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name                string
		upstream, repo, tag string
		want                cache.Tag
		wantErr             error
	}{
		{"stored", "docker.io", "library/alpine", "3", a, nil},
		{"other upstream, overwritten", "ghcr.io", "library/alpine", "3", b, nil},
		{"other tag", "docker.io", "library/alpine", "latest", b, nil},
		{"unknown tag", "docker.io", "library/alpine", "edge", cache.Tag{}, cache.ErrNotFound},
		{"deleted tag", "docker.io", "library/alpine", "gone", cache.Tag{}, cache.ErrNotFound},
		{"unknown repository", "docker.io", "library/nginx", "3", cache.Tag{}, cache.ErrNotFound},
		{"parts do not run together", "docker.io", "library", "alpine\x003", cache.Tag{}, cache.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Tag(tc.upstream, tc.repo, tc.tag)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Tag(%q, %q, %q) error = %v, want %v", tc.upstream, tc.repo, tc.tag, err, tc.wantErr)
			}
			if got.Digest != tc.want.Digest || got.MediaType != tc.want.MediaType || got.Size != tc.want.Size || !got.FetchedAt.Equal(tc.want.FetchedAt) {
				t.Errorf("Tag(%q, %q, %q) = %+v, want %+v", tc.upstream, tc.repo, tc.tag, got, tc.want)
			}
		})
	}
}

func TestEachTag(t *testing.T) {
	s := openTest(t, t.TempDir())
	rec := cache.Tag{Digest: digest.FromString("a"), MediaType: manifestType, Size: 10}
	for _, k := range [][3]string{
		{"ghcr.io", "o/app", "1"},
		{"docker.io", "library/alpine", "latest"},
		{"docker.io", "library/alpine", "3"},
	} {
		if err := s.SetTag(k[0], k[1], k[2], rec); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		limit int
		want  []string
	}{
		{"all, in order", 10, []string{"docker.io library/alpine 3", "docker.io library/alpine latest", "ghcr.io o/app 1"}},
		{"stopped early", 1, []string{"docker.io library/alpine 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := s.EachTag(func(upstream, repo, tag string, got1 cache.Tag) bool {
				if got1.Digest != rec.Digest {
					t.Errorf("record of %s/%s:%s = %+v", upstream, repo, tag, got1)
				}
				got = append(got, upstream+" "+repo+" "+tag)
				return len(got) < tc.limit
			})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("EachTag visited %q, want %q", got, tc.want)
			}
		})
	}
}
