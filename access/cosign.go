package access

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// The annotations and media types of signatures stored in registries.
const (
	// CosignSignatureAnnotation carries the base64 signature of a cosign
	// signature layer.
	CosignSignatureAnnotation = "dev.cosignproject.cosign/signature"
	// CosignCertificateAnnotation carries the signer's PEM certificate.
	CosignCertificateAnnotation = "dev.sigstore.cosign/certificate"
	// CosignPayloadMediaType is the media type of a simple-signing payload.
	CosignPayloadMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// BundleArtifactPrefix starts the artifact type of sigstore bundles
	// ("application/vnd.dev.sigstore.bundle.v0.3+json").
	BundleArtifactPrefix = "application/vnd.dev.sigstore.bundle"
	// MaxSignatureBlob bounds a signature payload or bundle read.
	MaxSignatureBlob = 1 << 20
	// MaxSignaturesPerManifest bounds the signatures looked at for one
	// manifest.
	MaxSignaturesPerManifest = 32
)

// CosignTag is the tag under which cosign stores the signatures of d
// ("sha256-<hex>.sig").
func CosignTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".sig"
}

// signatureManifest is the part of an OCI or Docker image manifest that
// signatures use.
type signatureManifest struct {
	ArtifactType string `json:"artifactType"`
	Config       struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Layers []struct {
		MediaType   string            `json:"mediaType"`
		Digest      digest.Digest     `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
}

// BlobReader returns the bytes of blob d, at most max of them.
type BlobReader func(d digest.Digest, max int64) ([]byte, error)

// ManifestSignatures reads the signatures a signature manifest carries:
// the layers of a cosign signature manifest (the manifest of the
// sha256-<hex>.sig tag, or a cosign referrer), whose blob is the payload
// and whose annotations carry the signature and certificate; and the
// layers of a sigstore bundle referrer, each a bundle. source names the
// manifest in messages; blob reads the layers.
func ManifestSignatures(manifest []byte, source string, blob BlobReader) ([]Signature, error) {
	var m signatureManifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%s is not a signature manifest: %w", source, err)
	}
	var out []Signature
	for _, l := range m.Layers {
		if len(out) == MaxSignaturesPerManifest {
			break
		}
		b64 := l.Annotations[CosignSignatureAnnotation]
		bundled := IsBundleArtifact(l.MediaType)
		if b64 == "" && !bundled {
			continue
		}
		if l.Size > MaxSignatureBlob {
			return nil, fmt.Errorf("%s: layer %s of %d bytes is too large for a signature", source, l.Digest, l.Size)
		}
		content, err := blob(l.Digest, MaxSignatureBlob)
		if err != nil {
			return nil, fmt.Errorf("%s: reading %s: %w", source, l.Digest, err)
		}
		if bundled {
			out = append(out, Signature{Source: source, Bundle: content})
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%s: signature annotation is not base64: %w", source, err)
		}
		s := Signature{Source: source, Payload: content, Signature: sig}
		if c := l.Annotations[CosignCertificateAnnotation]; c != "" {
			s.Certificate = []byte(c)
		}
		if rb := l.Annotations[CosignRekorBundleAnnotation]; rb != "" {
			s.RekorBundle = []byte(rb)
		}
		out = append(out, s)
	}
	return out, nil
}

// IsBundleArtifact reports whether an artifact type (or a layer's media
// type) is that of a sigstore bundle.
func IsBundleArtifact(t string) bool {
	return len(t) >= len(BundleArtifactPrefix) && t[:len(BundleArtifactPrefix)] == BundleArtifactPrefix
}

// checkSimpleSigning checks that a cosign payload is a container image
// signature of d.
func checkSimpleSigning(p []byte, d digest.Digest) error {
	var sci payload.SimpleContainerImage
	if err := json.Unmarshal(p, &sci); err != nil {
		return fmt.Errorf("the payload is not a simple-signing document: %w", err)
	}
	if sci.Critical.Type != payload.CosignSignatureType {
		return fmt.Errorf("the payload is of type %q, not a container image signature", sci.Critical.Type)
	}
	if sci.Critical.Image.DockerManifestDigest != d.String() {
		return fmt.Errorf("the payload signs %s, not this manifest", sci.Critical.Image.DockerManifestDigest)
	}
	return nil
}

// verifyBundle checks a sigstore bundle: its signature must be over d (a
// message signature of the digest, or a DSSE statement with d as subject).
func (v *VerifyRule) verifyBundle(d digest.Digest, raw []byte) (string, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return "", fmt.Errorf("not a valid sigstore bundle: %w", err)
	}
	want, err := hex.DecodeString(d.Encoded())
	if err != nil || d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("only sha256 manifests can be checked against a bundle")
	}
	policyFor := func(opt verify.PolicyOption) verify.PolicyBuilder {
		return verify.NewPolicy(verify.WithArtifactDigest("sha256", want), opt)
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return "", fmt.Errorf("bundle without verification material: %w", err)
	}
	if vc.Certificate() != nil {
		if v.certVerifier == nil {
			return "", errNoTrust
		}
		return v.verifyCertificate(&b, policyFor)
	}
	if v.keyVerifier == nil {
		return "", errNoTrust
	}
	for i, name := range v.keyNames {
		if _, err := v.keyVerifier.Verify(&keyedEntity{SignedEntity: &b, hint: keyHint(i)}, policyFor(verify.WithKey())); err == nil {
			return "key " + name, nil
		}
	}
	return "", errors.New("the bundle does not verify with any configured key")
}

// cosignEntity presents a cosign signature to sigstore-go's verifier: a
// message signature over the payload's SHA-256, with the configured key
// named by hint, or the signer's certificate.
type cosignEntity struct {
	sig  Signature
	hint string
	cert *x509.Certificate
	// tlog is the transparency log entry of the signature's Rekor bundle.
	tlog []*tlog.Entry
}

func (e *cosignEntity) HasInclusionPromise() bool           { return len(e.tlog) > 0 }
func (e *cosignEntity) HasInclusionProof() bool             { return false }
func (e *cosignEntity) Timestamps() ([][]byte, error)       { return nil, nil }
func (e *cosignEntity) TlogEntries() ([]*tlog.Entry, error) { return e.tlog, nil }
func (e *cosignEntity) Version() (string, error)            { return "v0.3", nil }

func (e *cosignEntity) SignatureContent() (verify.SignatureContent, error) {
	sum := sha256.Sum256(e.sig.Payload)
	return bundle.NewMessageSignature(sum[:], "SHA2_256", e.sig.Signature), nil
}

func (e *cosignEntity) VerificationContent() (verify.VerificationContent, error) {
	if e.cert != nil {
		return bundle.NewCertificate(e.cert), nil
	}
	return &keyContent{hint: e.hint}, nil
}

// keyedEntity is a bundle signed with a key, presented as signed by the
// configured key named hint (a bundle's own hint is the signer's choice).
type keyedEntity struct {
	verify.SignedEntity
	hint string
}

func (e *keyedEntity) VerificationContent() (verify.VerificationContent, error) {
	return &keyContent{hint: e.hint}, nil
}

// keyContent is verification by a configured key.
type keyContent struct{ hint string }

func (k *keyContent) CompareKey(key any, tm root.TrustedMaterial) bool {
	v, err := tm.PublicKeyVerifier(k.hint)
	if err != nil {
		return false
	}
	pub, err := v.PublicKey()
	if err != nil {
		return false
	}
	eq, ok := key.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub)
}

func (k *keyContent) ValidAtTime(t time.Time, tm root.TrustedMaterial) bool {
	v, err := tm.PublicKeyVerifier(k.hint)
	return err == nil && v.ValidAtTime(t)
}

func (k *keyContent) Certificate() *x509.Certificate      { return nil }
func (k *keyContent) Intermediates() []*x509.Certificate  { return nil }
func (k *keyContent) PublicKey() verify.PublicKeyProvider { return k }
func (k *keyContent) Hint() string                        { return k.hint }

// Interface guards
var (
	_ verify.SignedEntity        = (*cosignEntity)(nil)
	_ verify.SignedEntity        = (*keyedEntity)(nil)
	_ verify.VerificationContent = (*keyContent)(nil)
)
