package hubtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// putManifest pushes a manifest straight to the registry and returns its
// digest.
func putManifest(t *testing.T, h *Hub, repo, ref string, m any) string {
	t.Helper()
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var mt struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(body, &mt); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, h.RegistryURL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mt.MediaType)
	if _, err := h.expect(req, http.StatusCreated); err != nil {
		t.Fatalf("pushing manifest %s:%s: %v", repo, ref, err)
	}
	return sha256Digest(body)
}

// artifact returns an OCI manifest with config and artifactType ("" to
// let the config's media type stand for it) that refers to subject.
func artifact(config ocispec.Descriptor, artifactType string, subject ocispec.Descriptor) ocispec.Manifest {
	m := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       config,
		Layers:       []ocispec.Descriptor{config},
		Subject:      &subject,
	}
	m.SchemaVersion = 2
	return m
}

// digestFor parses a digest this test computed.
func digestFor(t *testing.T, s string) digest.Digest {
	t.Helper()
	d, err := digest.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestReferrers(t *testing.T) {
	h := startHub(t, Options{Referrers: true})
	const repo = "library/signed"
	img, subjectDigest, err := h.PushImage(repo, "1", 1, 512, true)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digestFor(t, subjectDigest), Size: int64(len(raw))}
	other := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digestFor(t, sha256Digest([]byte("other"))), Size: 5}

	empty := []byte("{}")
	emptyDigest := sha256Digest(empty)
	if err := h.uploadBlob(repo, emptyDigest, bytes.NewReader(empty), 2); err != nil {
		t.Fatal(err)
	}
	emptyConfig := ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: digestFor(t, emptyDigest), Size: 2}
	sigConfig := emptyConfig
	sigConfig.MediaType = "application/vnd.example.sig.config"

	sbom := putManifest(t, h, repo, "sbom", artifact(emptyConfig, "application/vnd.example.sbom", subject))
	sig := putManifest(t, h, repo, "sig", artifact(sigConfig, "", subject))
	putManifest(t, h, repo, "unrelated", artifact(emptyConfig, "application/vnd.example.sbom", other))
	// An untagged referrer, listed only by the referrers tag schema.
	attManifest := artifact(emptyConfig, "application/vnd.example.att", subject)
	attBody, err := json.Marshal(attManifest)
	if err != nil {
		t.Fatal(err)
	}
	att := putManifest(t, h, repo, sha256Digest(attBody), attManifest)
	fallback := ocispec.Index{
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.example.att",
			Digest: digestFor(t, att), Size: int64(len(attBody)),
		}},
	}
	fallback.SchemaVersion = 2
	putManifest(t, h, repo, strings.Replace(subjectDigest, ":", "-", 1), fallback)

	tok := token(t, h, "", "", "repository:"+repo+":pull")
	tests := []struct {
		name     string
		path     string
		status   int
		want     map[string]string // digest → artifact type
		filtered bool
	}{
		{"all", "/v2/" + repo + "/referrers/" + subjectDigest, 200, map[string]string{
			sbom: "application/vnd.example.sbom", sig: "application/vnd.example.sig.config", att: "application/vnd.example.att",
		}, false},
		{"by artifact type", "/v2/" + repo + "/referrers/" + subjectDigest + "?artifactType=application/vnd.example.sbom", 200,
			map[string]string{sbom: "application/vnd.example.sbom"}, true},
		{"none", "/v2/" + repo + "/referrers/" + sha256Digest([]byte("nothing")), 200, map[string]string{}, false},
		{"another repository", "/v2/library/nobody/referrers/" + subjectDigest, 401, nil, false},
		{"bad digest", "/v2/" + repo + "/referrers/sha256:zz", 400, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.Counters.Reset()
			resp, body := frontGet(t, h, http.MethodGet, tc.path, tok)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.want == nil {
				return
			}
			if got := h.Counters.Referrers.Load(); got != 1 {
				t.Errorf("Referrers counter %d, want 1", got)
			}
			if ct := resp.Header.Get("Content-Type"); ct != ocispec.MediaTypeImageIndex {
				t.Errorf("Content-Type %q", ct)
			}
			if got := resp.Header.Get("OCI-Filters-Applied") == "artifactType"; got != tc.filtered {
				t.Errorf("OCI-Filters-Applied %q, filtered %v", resp.Header.Get("OCI-Filters-Applied"), tc.filtered)
			}
			if !bytes.Contains(body, []byte(`"manifests":[`)) {
				t.Errorf("manifests is not a list: %s", body)
			}
			var idx ocispec.Index
			if err := json.Unmarshal(body, &idx); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, d := range idx.Manifests {
				got[d.Digest.String()] = d.ArtifactType
			}
			if len(got) != len(tc.want) || len(idx.Manifests) != len(tc.want) {
				t.Fatalf("referrers %v, want %v", got, tc.want)
			}
			for d, at := range tc.want {
				if got[d] != at {
					t.Errorf("referrer %s: artifact type %q, want %q (all: %v)", d, got[d], at, got)
				}
			}
		})
	}
}

func TestTagsPagination(t *testing.T) {
	h := startHub(t, Options{})
	const repo = "library/paged"
	want := []string{"a", "b", "c", "d", "e"}
	for _, tag := range want {
		if _, _, err := h.PushImage(repo, tag, 1, 64, false); err != nil {
			t.Fatal(err)
		}
	}
	tok := token(t, h, "", "", "repository:"+repo+":pull")
	h.Counters.Reset()
	var got []string
	path := "/v2/" + repo + "/tags/list?n=2"
	pages := 0
	for path != "" {
		pages++
		if pages > len(want) {
			t.Fatalf("more pages than tags: %v", got)
		}
		resp, body := frontGet(t, h, http.MethodGet, path, tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Tags) > 2 {
			t.Errorf("page of %d tags, want at most 2", len(list.Tags))
		}
		got = append(got, list.Tags...)
		path = ""
		if link := resp.Header.Get("Link"); link != "" {
			start, end := strings.Index(link, "<"), strings.Index(link, ">")
			if start < 0 || end < start || !strings.Contains(link, `rel="next"`) {
				t.Fatalf("Link header %q", link)
			}
			path = link[start+1 : end]
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("tags %v, want %v", got, want)
	}
	if n := h.Counters.TagsList.Load(); n != int64(pages) || pages < 3 {
		t.Errorf("TagsList counter %d over %d pages, want one per page and at least 3 pages", n, pages)
	}
}
