package access

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestManifestSignatures(t *testing.T) {
	payload := []byte(`{"critical":{}}`)
	bundle := []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)
	blobs := map[digest.Digest][]byte{digest.FromBytes(payload): payload, digest.FromBytes(bundle): bundle}
	read := func(d digest.Digest, max int64) ([]byte, error) {
		if b, ok := blobs[d]; ok {
			return b, nil
		}
		return nil, errors.New("no such blob")
	}
	layer := func(mt string, b []byte, annotations string) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"annotations":{%s}}`, mt, digest.FromBytes(b), len(b), annotations)
	}
	manifest := func(layers ...string) []byte {
		return []byte(`{"schemaVersion":2,"layers":[` + strings.Join(layers, ",") + `]}`)
	}
	cosignLayer := layer(CosignPayloadMediaType, payload, `"dev.cosignproject.cosign/signature":"c2ln","dev.sigstore.cosign/certificate":"PEM"`)
	tests := []struct {
		name       string
		manifest   []byte
		want       string // kinds of the signatures: c (cosign), b (bundle)
		wantErrSub string
	}{
		{"cosign", manifest(cosignLayer), "c", ""},
		{"bundle", manifest(layer("application/vnd.dev.sigstore.bundle.v0.3+json", bundle, "")), "b", ""},
		{"both, others skipped", manifest(layer("application/vnd.oci.image.layer.v1.tar", []byte("x"), ""), cosignLayer, layer("application/vnd.dev.sigstore.bundle.v0.3+json", bundle, "")), "cb", ""},
		{"bad base64", manifest(layer(CosignPayloadMediaType, payload, `"dev.cosignproject.cosign/signature":"!!"`)), "", "base64"},
		{"missing blob", manifest(layer(CosignPayloadMediaType, []byte("gone"), `"dev.cosignproject.cosign/signature":"c2ln"`)), "", "no such blob"},
		{"too large", []byte(`{"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":1073741824}]}`), "", "too large"},
		{"not JSON", []byte(`{`), "", "not a signature manifest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigs, err := ManifestSignatures(tc.manifest, "tag x.sig", read)
			if tc.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
					t.Fatalf("ManifestSignatures error = %v, want one about %q", err, tc.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, s := range sigs {
				switch {
				case s.Bundle != nil:
					got += "b"
				case string(s.Signature) == "sig" && string(s.Payload) == string(payload) && string(s.Certificate) == "PEM":
					got += "c"
				default:
					got += "?"
				}
			}
			if got != tc.want {
				t.Errorf("signatures %q, want %q", got, tc.want)
			}
		})
	}
}
