package access

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Mode says what a failed signature rule does.
type Mode uint8

// The modes of a verify rule.
const (
	// ModeEnforce refuses a manifest without a valid signature.
	ModeEnforce Mode = iota
	// ModeAudit serves it, and logs and counts the failure.
	ModeAudit
)

// DefaultVerdictTTL is how long a signature verdict is trusted without
// looking at the manifest's signatures again, when VerifyConfig.VerdictTTL
// is zero.
const DefaultVerdictTTL = 5 * time.Minute

// Identity is a keyless signer: the subject of its certificate (an email
// or URI SAN) and the OIDC issuer that vouched for it, both exact.
type Identity struct {
	Subject, Issuer string
}

// VerifyConfig is one signature rule.
type VerifyConfig struct {
	// Patterns are the repositories the rule applies to (absolute, no
	// tag).
	Patterns []string
	// Keys are PEM public keys; a signature by any one of them passes.
	Keys [][]byte
	// KeyNames name the keys in messages (their files), index for index.
	KeyNames []string
	// Identities are keyless signers; a certificate of any one of them,
	// chaining to TrustedRoot, passes.
	Identities []Identity
	// TrustedRoot is a sigstore trusted root (JSON), required with
	// Identities: its certificate authorities, and its transparency logs
	// and timestamp authorities when signatures carry their evidence.
	TrustedRoot []byte
	// Mode is ModeEnforce or ModeAudit.
	Mode Mode
	// VerdictTTL bounds how long a verdict is reused before the
	// manifest's signatures are looked up again. Default:
	// DefaultVerdictTTL.
	VerdictTTL time.Duration
}

// WithDefaults returns vc with VerdictTTL's default filled in when it is
// zero or less: the values a rule runs with.
func (vc VerifyConfig) WithDefaults() VerifyConfig {
	if vc.VerdictTTL <= 0 {
		vc.VerdictTTL = DefaultVerdictTTL
	}
	return vc
}

// VerifyRule is one parsed signature rule with its verdict cache.
type VerifyRule struct {
	Rule
	patterns []Pattern
	mode     Mode
	ttl      time.Duration

	keyNames []string
	// keyTrust holds the keys under the hints "key-<i>".
	keyTrust root.TrustedMaterial
	// keyVerifier checks key signatures (no timestamps: keys do not
	// expire).
	keyVerifier *verify.Verifier
	// identities and the verifiers of certificates: by the evidence a
	// signature carries, its transparency log entries (certVerifierTlog)
	// or signed timestamps (certVerifierTSA), which tell when the
	// short-lived certificate was valid; else at the current time
	// (long-lived certificates of a private authority).
	identities       []verify.CertificateIdentity
	certVerifier     *verify.Verifier
	certVerifierTlog *verify.Verifier
	certVerifierTSA  *verify.Verifier

	verdicts verdictCache
}

// newVerifyRule parses one signature rule.
func newVerifyRule(id string, vc VerifyConfig) (*VerifyRule, error) {
	vc = vc.WithDefaults()
	v := &VerifyRule{Rule: Rule{ID: id, Kind: "verify", Text: strings.Join(vc.Patterns, " ")},
		mode: vc.Mode, ttl: vc.VerdictTTL}
	if len(vc.Patterns) == 0 {
		return nil, fmt.Errorf("%s: a verify rule needs a repository pattern", id)
	}
	for _, s := range vc.Patterns {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if p.HasTag() {
			return nil, fmt.Errorf("%s: pattern %q: a verify rule names repositories, not tags", id, s)
		}
		v.patterns = append(v.patterns, p)
	}
	if len(vc.Keys) == 0 && len(vc.Identities) == 0 {
		return nil, fmt.Errorf("%s: a verify rule needs a key or an identity", id)
	}
	if len(vc.Keys) > 0 {
		keys := make(map[string]*root.ExpiringKey, len(vc.Keys))
		for i, pemKey := range vc.Keys {
			name := fmt.Sprintf("key %d", i+1)
			if i < len(vc.KeyNames) {
				name = vc.KeyNames[i]
			}
			pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
			if err != nil {
				return nil, fmt.Errorf("%s: key %s: %w", id, name, err)
			}
			sv, err := signature.LoadVerifier(pub, crypto.SHA256)
			if err != nil {
				return nil, fmt.Errorf("%s: key %s: %w", id, name, err)
			}
			keys[keyHint(i)] = root.NewExpiringKey(sv, time.Time{}, time.Time{})
			v.keyNames = append(v.keyNames, name)
		}
		v.keyTrust = root.NewTrustedPublicKeyMaterialFromMapping(keys)
		kv, err := verify.NewVerifier(v.keyTrust, verify.WithNoObserverTimestamps())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		v.keyVerifier = kv
	}
	if len(vc.Identities) > 0 {
		if len(vc.TrustedRoot) == 0 {
			return nil, fmt.Errorf("%s: identities need a trusted_root", id)
		}
		tr, err := root.NewTrustedRootFromJSON(vc.TrustedRoot)
		if err != nil {
			return nil, fmt.Errorf("%s: trusted root: %w", id, err)
		}
		for _, ident := range vc.Identities {
			if ident.Subject == "" || ident.Issuer == "" {
				return nil, fmt.Errorf("%s: an identity needs a subject and an issuer", id)
			}
			ci, err := verify.NewShortCertificateIdentity(ident.Issuer, "", ident.Subject, "")
			if err != nil {
				return nil, fmt.Errorf("%s: identity %s %s: %w", id, ident.Subject, ident.Issuer, err)
			}
			v.identities = append(v.identities, ci)
		}
		if v.certVerifier, err = verify.NewVerifier(tr, verify.WithCurrentTime()); err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		if len(tr.RekorLogs()) > 0 {
			if v.certVerifierTlog, err = verify.NewVerifier(tr, verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1)); err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
		}
		if len(tr.TimestampingAuthorities()) > 0 {
			if v.certVerifierTSA, err = verify.NewVerifier(tr, verify.WithSignedTimestamps(1)); err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
		}
	}
	return v, nil
}

// keyHint names configured key i in the trusted key material.
func keyHint(i int) string { return fmt.Sprintf("key-%d", i) }

// matches reports whether the rule applies to name (registry and
// repository components).
func (v *VerifyRule) matches(name []string) bool {
	for _, p := range v.patterns {
		if p.matchComponents(name) {
			return true
		}
	}
	return false
}

// Mode returns the rule's mode.
func (v *VerifyRule) Mode() Mode { return v.mode }

// Signature is one signature found for a manifest, in one of two forms: a
// cosign signature (a simple-signing payload, its signature and, for
// keyless signing, the signer's certificate), or a sigstore bundle.
type Signature struct {
	// Source says where it was found, for messages: "tag sha256-….sig"
	// or "referrer sha256:…".
	Source string
	// Payload is the cosign simple-signing payload that was signed.
	Payload []byte
	// Signature is the raw signature over Payload.
	Signature []byte
	// Certificate is the signer's PEM certificate (keyless), if any.
	Certificate []byte
	// RekorBundle is the transparency log's signed promise that the
	// keyless signature was logged (cosign's bundle annotation), if any:
	// its time is when the certificate must have been valid.
	RekorBundle []byte
	// Bundle is a sigstore bundle (JSON); the other fields are then unset.
	Bundle []byte
}

// Verdict is the outcome of a signature rule for one manifest.
type Verdict struct {
	// OK is set when a valid signature from the rule's trust was found.
	OK bool
	// Reason explains the verdict: who signed, or why nothing passed.
	Reason string
	// Borrowed is set when the verdict comes from a related manifest (a
	// signed index that lists it, or a signed platform manifest it
	// lists) rather than the manifest's own signatures: it then holds
	// for the TTL only, since the manifest's own signature set does not
	// say whether the relative is still signed.
	Borrowed bool
}

// Verify checks whether any of sigs is a valid signature of manifest d
// from the rule's trust (a configured key, or a configured identity's
// certificate under the trusted root). The signed content must name d:
// the payload's docker-manifest-digest, or the bundle's subject or message
// digest. The repository the signer pushed to (the payload's
// docker-reference) is not compared: a mirror serves the same digest under
// another name.
func (v *VerifyRule) Verify(d digest.Digest, sigs []Signature) Verdict {
	if len(sigs) == 0 {
		return Verdict{Reason: "no signature found for " + d.String()}
	}
	var reasons []string
	for _, s := range sigs {
		var who string
		var err error
		if s.Bundle != nil {
			who, err = v.verifyBundle(d, s.Bundle)
		} else {
			who, err = v.verifyCosign(d, s)
		}
		if err == nil {
			return Verdict{OK: true, Reason: "signed by " + who + " (" + s.Source + ")"}
		}
		reasons = append(reasons, s.Source+": "+err.Error())
	}
	return Verdict{Reason: "no valid signature for " + d.String() + ": " + strings.Join(reasons, "; ")}
}

// errNoTrust is a signature of a kind the rule has no trust for.
var errNoTrust = errors.New("signed by neither a configured key nor a configured identity")

// verifyCosign checks a cosign simple-signing signature.
func (v *VerifyRule) verifyCosign(d digest.Digest, s Signature) (string, error) {
	if err := checkSimpleSigning(s.Payload, d); err != nil {
		return "", err
	}
	policyFor := func(opt verify.PolicyOption) verify.PolicyBuilder {
		return verify.NewPolicy(verify.WithArtifact(bytes.NewReader(s.Payload)), opt)
	}
	if s.Certificate != nil {
		cert, err := parseCertificate(s.Certificate)
		if err != nil {
			return "", err
		}
		if v.certVerifier == nil {
			return "", errNoTrust
		}
		e := &cosignEntity{sig: s, cert: cert}
		if s.RekorBundle != nil {
			entry, err := rekorEntry(s.RekorBundle)
			if err != nil {
				return "", err
			}
			e.tlog = []*tlog.Entry{entry}
		}
		return v.verifyCertificate(e, policyFor)
	}
	if v.keyVerifier == nil {
		return "", errNoTrust
	}
	for i, name := range v.keyNames {
		if _, err := v.keyVerifier.Verify(&cosignEntity{sig: s, hint: keyHint(i)}, policyFor(verify.WithKey())); err == nil {
			return "key " + name, nil
		}
	}
	return "", errors.New("the signature does not verify with any configured key")
}

// verifyCertificate checks a certificate signature against each identity:
// with the evidence the entity carries (transparency log entries, signed
// timestamps), which must then verify; else at the current time.
func (v *VerifyRule) verifyCertificate(e verify.SignedEntity, policyFor func(verify.PolicyOption) verify.PolicyBuilder) (string, error) {
	verifiers := []*verify.Verifier{v.certVerifier}
	if logged, stamped := evidence(e); logged || stamped {
		verifiers = nil
		if logged {
			verifiers = append(verifiers, v.certVerifierTlog)
		}
		if stamped {
			verifiers = append(verifiers, v.certVerifierTSA)
		}
	}
	var lastErr error
	for _, ci := range v.identities {
		for _, ver := range verifiers {
			if ver == nil {
				continue
			}
			res, err := ver.Verify(e, policyFor(verify.WithCertificateIdentity(ci)))
			if err == nil {
				who := "identity " + ci.SubjectAlternativeName.SubjectAlternativeName
				if res.VerifiedIdentity != nil {
					who = "identity " + res.VerifiedIdentity.SubjectAlternativeName.SubjectAlternativeName
				}
				return who + " (" + ci.Issuer.Issuer + ")", nil
			}
			lastErr = err
		}
	}
	if lastErr == nil {
		return "", errors.New("the signature carries transparency log or timestamp evidence, and the trusted root has no log or timestamp authority to check it")
	}
	return "", fmt.Errorf("the certificate is not that of a configured identity under the trusted root: %w", lastErr)
}

// evidence reports whether a signed entity carries transparency log
// entries, and signed timestamps.
func evidence(e verify.SignedEntity) (logged, stamped bool) {
	entries, err := e.TlogEntries()
	logged = err == nil && len(entries) > 0
	ts, err := e.Timestamps()
	return logged, err == nil && len(ts) > 0
}

// parseCertificate reads the first PEM certificate of b.
func parseCertificate(b []byte) (*x509.Certificate, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(b)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("the signature's certificate is not valid PEM: %w", err)
	}
	return certs[0], nil
}
