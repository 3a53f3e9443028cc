package mirror

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
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
			m := &Mirror{cfg: Config{Policy: tc.policy}}
			if got := string(m.filterTags(tg, []byte(tc.body))); got != tc.want {
				t.Errorf("filterTags(%s) = %s, want %s", tc.body, got, tc.want)
			}
		})
	}
}

// testVerifyPolicy returns a policy whose signature rule covers
// docker.io/library/* with a fresh key (no image is signed with it).
func testVerifyPolicy(t *testing.T, mode access.Mode) *access.Policy {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := access.New(access.Config{Verify: []access.VerifyConfig{{Patterns: []string{"docker.io/library/*"},
		Keys: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}, Mode: mode}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestManifestAsBlobGetsAdmission asks for stored objects at the blobs
// endpoint of a repository under a signature rule: a manifest (recorded
// as one, or stored as a blob but reading as one) gets the manifest's
// admission, so an unsigned one is refused; other blobs, and manifests
// without a rule or under an audit rule, are served.
func TestManifestAsBlobGetsAdmission(t *testing.T) {
	image := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:` + strings.Repeat("1", 64) + `","size":3}]}`
	bare := `{"schemaVersion":2,"config":{"digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},"layers":[{"digest":"sha256:` + strings.Repeat("2", 64) + `","size":3}]}`
	index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
	config := `{"architecture":"amd64","os":"linux"}`
	tests := []struct {
		name        string
		mode        access.Mode
		noRule      bool
		mediaType   string
		doc, method string
		range_      string
		want        int
	}{
		{"manifest GET", access.ModeEnforce, false, oci.MediaTypeOCIManifest, image, http.MethodGet, "", http.StatusForbidden},
		{"manifest HEAD", access.ModeEnforce, false, oci.MediaTypeOCIManifest, image, http.MethodHead, "", http.StatusForbidden},
		{"manifest range", access.ModeEnforce, false, oci.MediaTypeOCIManifest, image, http.MethodGet, "bytes=0-9", http.StatusForbidden},
		{"index GET", access.ModeEnforce, false, oci.MediaTypeOCIIndex, index, http.MethodGet, "", http.StatusForbidden},
		{"manifest stored as a blob", access.ModeEnforce, false, blobContentType, bare, http.MethodGet, "", http.StatusForbidden},
		{"config blob", access.ModeEnforce, false, blobContentType, config, http.MethodGet, "", http.StatusOK},
		{"manifest under an audit rule", access.ModeAudit, false, oci.MediaTypeOCIManifest, image, http.MethodGet, "", http.StatusOK},
		{"manifest without a rule", access.ModeEnforce, true, oci.MediaTypeOCIManifest, image, http.MethodGet, "", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{}
			if !tc.noRule {
				cfg.Policy = testVerifyPolicy(t, tc.mode)
			}
			mt := newManifestTest(t, cfg, upstream.Options{})
			// A manifest fetch records that the upstream lets clients pull
			// the repository.
			mt.reg.push("library/app", "other")
			mt.get("/v2/app/manifests/other")
			d := putJSON(t, mt.m, tc.mediaType, tc.doc)
			mt.m.link(target{registry: "docker.io", repo: "library/app"}, d)
			req := httptest.NewRequest(tc.method, "/v2/library/app/blobs/"+d.String(), nil)
			if tc.range_ != "" {
				req.Header.Set("Range", tc.range_)
			}
			w := httptest.NewRecorder()
			mt.m.ServeHTTP(w, req)
			if w.Code != tc.want && !(tc.want == http.StatusOK && w.Code == http.StatusPartialContent) {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.name, w.Code, w.Body.String(), tc.want)
			}
			if tc.want == http.StatusForbidden && tc.method == http.MethodGet {
				wantError(t, tc.name, w, http.StatusForbidden, oci.CodeDenied)
				if strings.Contains(w.Body.String(), "layers") {
					t.Errorf("%s: the refusal carries the manifest: %s", tc.name, w.Body.String())
				}
			}
		})
	}
}

// TestSignatureRefsSurviveReferrersErrors looks up the signatures of an
// image whose cosign .sig tag exists or not while the referrers API fails
// or is absent: a failing referrers API does not throw away the .sig
// signature, and fails the lookup only when nothing else was found.
func TestSignatureRefsSurviveReferrersErrors(t *testing.T) {
	tests := []struct {
		name      string
		sig       bool
		referrers int // the referrers API's status; 0: absent (404)
		wantRefs  int
		wantErr   bool
	}{
		{"sig tag, referrers fail", true, http.StatusInternalServerError, 1, false},
		{"sig tag, referrers forbidden", true, http.StatusForbidden, 1, false},
		{"sig tag, no referrers API", true, 0, 1, false},
		{"no sig tag, referrers fail", false, http.StatusInternalServerError, 0, true},
		{"no sig tag, no referrers API", false, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mt := newManifestTest(t, Config{NegativeTTL: -1}, upstream.Options{})
			d := mt.reg.push("library/app", "1")
			if tc.sig {
				mt.reg.push("library/app", access.CosignTag(d))
			}
			mt.reg.mu.Lock()
			mt.reg.referrers = tc.referrers
			mt.reg.mu.Unlock()
			tg := target{upstream: mt.m.upstreams["docker.io"], registry: "docker.io", repo: "library/app"}
			refs, err := mt.m.signatureRefs(t.Context(), tg, d)
			if (err != nil) != tc.wantErr || len(refs) != tc.wantRefs {
				t.Errorf("signatureRefs = %d refs, %v; want %d refs, error %v", len(refs), err, tc.wantRefs, tc.wantErr)
			}
		})
	}
}

// TestUncachedManifestAsBlobGetsAdmission asks a mirror that does not hold
// a manifest for it at the blobs endpoint, under a signature rule: the
// bytes, filled now or streamed past a cache whose budget is too small
// to store them, are a manifest, so the request gets its admission (403
// for an unsigned one) before any byte goes out; without a rule it is
// served.
func TestUncachedManifestAsBlobGetsAdmission(t *testing.T) {
	tests := []struct {
		name     string
		policy   bool
		maxBytes int64  // the cache budget; 0: none
		rng      string // the request's Range
		want     int
	}{
		{"filled, under a signature rule", true, 0, "", http.StatusForbidden},
		{"filled, without a rule", false, 0, "", http.StatusOK},
		{"filled range, under a signature rule", true, 0, "bytes=0-99", http.StatusForbidden},
		{"past the cache, under a signature rule", true, 64, "", http.StatusForbidden},
		{"past the cache, without a rule", false, 64, "", http.StatusOK},
		{"range past the cache, under a signature rule", true, 64, "bytes=0-99", http.StatusForbidden},
		{"range past the cache, without a rule", false, 64, "bytes=0-99", http.StatusPartialContent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistry(t)
			store, rec := openCache(t, cache.Options{Dir: t.TempDir(), MaxBytes: tc.maxBytes})
			c, err := upstream.New(upstream.Config{Name: DockerHub, Endpoints: []string{reg.srv.URL}}, upstream.Options{})
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{Upstreams: []*upstream.Client{c}, Store: store, Records: rec, Logger: zap.NewNop()}
			if tc.policy {
				cfg.Policy = testVerifyPolicy(t, access.ModeEnforce)
			}
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			d := reg.push("library/app", "1")
			w := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/v2/library/app/blobs/"+d.String(), nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			m.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("GET of an uncached manifest as a blob: %d %s, want %d", w.Code, w.Body.String(), tc.want)
			}
			switch {
			case tc.want == http.StatusForbidden:
				wantError(t, tc.name, w, http.StatusForbidden, oci.CodeDenied)
			case tc.want == http.StatusPartialContent:
				if w.Body.Len() != 100 {
					t.Errorf("range: %d bytes, want 100", w.Body.Len())
				}
			case digest.FromBytes(w.Body.Bytes()) != d:
				t.Errorf("served %s, want the manifest %s", digest.FromBytes(w.Body.Bytes()), d)
			}
		})
	}
}

func TestRangeTotal(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"bytes 0-9/1234", 1234},
		{"bytes 0-9/*", -1},
		{"bytes */50", 50},
		{"", -1},
		{"bytes 0-9/-3", -1},
	}
	for _, tc := range tests {
		if got := rangeTotal(tc.in); got != tc.want {
			t.Errorf("rangeTotal(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
