package oci

import (
	_ "crypto/sha256" // registers sha256 for go-digest
	_ "crypto/sha512" // registers sha512 for go-digest
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ParseDigest validates s as "sha256:<64 lowercase hex>" or
// "sha512:<128 lowercase hex>", the digests regcache can verify.
func ParseDigest(s string) (digest.Digest, error) {
	alg, hex, ok := strings.Cut(s, ":")
	if !ok || alg == "" || hex == "" {
		return "", Errorf(http.StatusBadRequest, CodeDigestInvalid, "digest %q is not algorithm:hex", truncate(s))
	}
	var want int
	switch alg {
	case "sha256":
		want = 64
	case "sha512":
		want = 128
	default:
		return "", Errorf(http.StatusBadRequest, CodeDigestInvalid, "digest algorithm %q is not supported (sha256, sha512)", truncate(alg))
	}
	if len(hex) != want {
		return "", Errorf(http.StatusBadRequest, CodeDigestInvalid, "%s digest must have %d hex characters, got %d", alg, want, len(hex))
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return "", Errorf(http.StatusBadRequest, CodeDigestInvalid, "digest %q has characters other than lowercase hex", truncate(s))
		}
	}
	return digest.Digest(s), nil
}
