package mirror

import (
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

func TestParseImageRef(t *testing.T) {
	dgst := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in       string
		repoOnly bool
		want     string
		wantErr  bool
	}{
		{"alpine:3.19", false, "docker.io/library/alpine:3.19", false},
		{"alpine", false, "docker.io/library/alpine:latest", false},
		{"alpine", true, "docker.io/library/alpine", false},
		{"docker.io/library/alpine:3.19", false, "docker.io/library/alpine:3.19", false},
		{"index.docker.io/nginx", true, "docker.io/library/nginx", false},
		{"ghcr.io/owner/app@" + dgst, false, "ghcr.io/owner/app@" + dgst, false},
		{"ghcr.io/owner/app", false, "ghcr.io/owner/app:latest", false},
		{"registry.example:5000/team/app:v1", false, "registry.example:5000/team/app:v1", false},
		{"localhost/app:1", false, "localhost/app:1", false},
		{"owner/app:1", false, "docker.io/owner/app:1", false},
		{"Alpine:3", false, "", true},
		{"alpine:-bad", false, "", true},
		{"alpine@sha256:abc", false, "", true},
		{"", false, "", true},
	}
	for _, tc := range tests {
		got, err := ParseImageRef(tc.in, DockerHub, tc.repoOnly)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseImageRef(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got.String() != tc.want {
			t.Errorf("ParseImageRef(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// putJSON stores a manifest document and returns its digest.
func putJSON(t *testing.T, m *Mirror, mediaType, doc string) digest.Digest {
	t.Helper()
	d := digest.FromString(doc)
	if err := m.store.Put(d, mediaType, []byte(doc)); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPurgeKeepsWhatOtherTagsReach(t *testing.T) {
	m := newTestMirror(t, "", "docker.io")
	blob := func(s string) digest.Digest {
		d := digest.FromString(s)
		if err := m.store.Put(d, "application/octet-stream", []byte(s)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	desc := func(mt string, d digest.Digest, size int) string {
		return `{"mediaType":"` + mt + `","digest":"` + d.String() + `","size":` + strconv.Itoa(size) + `}`
	}
	layer, config := blob("layer"), blob("{}")
	image := putJSON(t, m, oci.MediaTypeOCIManifest, `{"schemaVersion":2,"mediaType":"`+oci.MediaTypeOCIManifest+`","config":`+
		desc("application/vnd.oci.image.config.v1+json", config, 2)+`,"layers":[`+desc("application/vnd.oci.image.layer.v1.tar", layer, 5)+`]}`)
	index := putJSON(t, m, oci.MediaTypeOCIIndex, `{"schemaVersion":2,"mediaType":"`+oci.MediaTypeOCIIndex+`","manifests":[`+
		desc(oci.MediaTypeOCIManifest, image, 100)+`]}`)
	// A chain of signatures, each signing the one before, ending at the
	// index, which the chain reaches three references deep: as deep as a
	// walk with a depth limit stops descending.
	subject := index
	for i := range 3 {
		subject = putJSON(t, m, oci.MediaTypeOCIManifest, `{"schemaVersion":2,"mediaType":"`+oci.MediaTypeOCIManifest+`","config":`+
			desc("application/vnd.oci.empty.v1+json", config, 2)+`,"layers":[],"annotations":{"n":"`+strconv.Itoa(i)+`"},"subject":`+
			desc(oci.MediaTypeOCIManifest, subject, 100)+`}`)
	}
	for tag, d := range map[string]digest.Digest{"latest": index, "v1": index, "aaa-chain": subject} {
		if err := m.records.SetTag("docker.io", "library/app", tag, cache.Tag{Digest: d}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := m.Purge(ImageRef{Registry: "docker.io", Repository: "library/app", Tag: "latest"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tags != 1 || res.Objects != 0 {
		t.Errorf("purge of one of two tags of an image: %+v, want 1 tag and no object", res)
	}
	for _, d := range []digest.Digest{index, image, config, layer} {
		if _, err := m.store.Inspect(d); err != nil {
			t.Errorf("%s is gone though v1 still reaches it: %v", d, err)
		}
	}
	// Purging the rest removes everything.
	res, err = m.Purge(ImageRef{Registry: "docker.io", Repository: "library/app"})
	if err != nil || res.Tags != 2 || res.Objects != 7 {
		t.Errorf("purge of the repository: %+v, %v; want 2 tags and 7 objects", res, err)
	}
}
