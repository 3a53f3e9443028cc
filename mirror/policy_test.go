package mirror

import (
	"strings"
	"testing"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/oci"
)

func TestIsSignatureArtifact(t *testing.T) {
	hexTag := "sha256-" + strings.Repeat("ab", 32)
	layers := func(types ...string) []byte {
		var parts []string
		for _, mt := range types {
			parts = append(parts, `{"mediaType":"`+mt+`","digest":"sha256:`+strings.Repeat("0", 64)+`","size":1}`)
		}
		return []byte(`{"schemaVersion":2,"layers":[` + strings.Join(parts, ",") + `]}`)
	}
	tests := []struct {
		name string
		ref  string
		mc   manifestContent
		want bool
	}{
		{"cosign signature", hexTag + ".sig", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: layers(access.CosignPayloadMediaType)}, true},
		{"attestation", "v1", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: layers("application/vnd.dsse.envelope.v1+json")}, true},
		{"bundle", "", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: layers("application/vnd.dev.sigstore.bundle.v0.3+json")}, true},
		{"image under a signature tag", hexTag + ".sig", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: layers("application/vnd.oci.image.layer.v1.tar+gzip")}, false},
		{"image with a signature layer too", "v1", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: layers(access.CosignPayloadMediaType, "application/vnd.oci.image.layer.v1.tar+gzip")}, false},
		{"image with a subject", "v1", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: []byte(`{"subject":{"digest":"sha256:` + strings.Repeat("1", 64) + `"},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar"}]}`)}, false},
		{"referrers tag index", hexTag, manifestContent{mediaType: oci.MediaTypeOCIIndex, data: []byte(`{"manifests":[]}`)}, true},
		{"index under another tag", "latest", manifestContent{mediaType: oci.MediaTypeOCIIndex, data: []byte(`{"manifests":[]}`)}, false},
		{"index under a short digest tag", "sha256-abc", manifestContent{mediaType: oci.MediaTypeOCIIndex, data: []byte(`{"manifests":[]}`)}, false},
		{"no layers", "v1", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: []byte(`{"layers":[]}`)}, false},
		{"not JSON", "v1", manifestContent{mediaType: oci.MediaTypeOCIManifest, data: []byte(`{`)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isSignatureArtifact(tc.ref, tc.mc); got != tc.want {
				t.Errorf("isSignatureArtifact(%q) = %v, want %v", tc.ref, got, tc.want)
			}
		})
	}
}

func TestFilterTags(t *testing.T) {
	p, err := access.New(access.Config{Deny: []string{"docker.io/library/nginx:*-rc*"}})
	if err != nil {
		t.Fatal(err)
	}
	tg := target{registry: "docker.io", repo: "library/nginx"}
	tests := []struct {
		name   string
		policy *access.Policy
		body   string
		want   string
	}{
		{"no policy", nil, `{"name":"library/nginx","tags":["1-rc1"]}`, `{"name":"library/nginx","tags":["1-rc1"]}`},
		{"filtered", p, `{"name":"library/nginx","tags":["1","1-rc1","2"]}`, `{"name":"library/nginx","tags":["1","2"]}`},
		{"nothing to filter keeps the bytes", p, `{"name": "library/nginx", "tags": ["1"]}`, `{"name": "library/nginx", "tags": ["1"]}`},
		{"not JSON", p, `{`, `{`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Mirror{policy: tc.policy}
			if got := string(m.filterTags(tg, []byte(tc.body))); got != tc.want {
				t.Errorf("filterTags(%s) = %s, want %s", tc.body, got, tc.want)
			}
		})
	}
}
