package access

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// testKey is a signing key and its PEM public key.
type testKey struct {
	signer signature.SignerVerifier
	pem    []byte
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{signer: sv, pem: pem}
}

// simpleSigning is cosign's payload for d, pushed to ref.
func simpleSigning(ref string, d digest.Digest) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, ref, d)
}

func (k testKey) sign(t *testing.T, payload []byte) Signature {
	t.Helper()
	sig, err := k.signer.SignMessage(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	return Signature{Source: "tag test.sig", Payload: payload, Signature: sig}
}

func TestVerifyCosignKey(t *testing.T) {
	trusted, other := newTestKey(t), newTestKey(t)
	d := digest.FromString("manifest")
	elsewhere := digest.FromString("another manifest")
	p, err := New(Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/acme/**"}, Keys: [][]byte{other.pem, trusted.pem}, KeyNames: []string{"other.pub", "trusted.pub"}}}})
	if err != nil {
		t.Fatal(err)
	}
	rules := p.VerifyRules("ghcr.io", "acme/app")
	if len(rules) != 1 {
		t.Fatalf("VerifyRules = %d rules, want 1", len(rules))
	}
	if r := p.VerifyRules("ghcr.io", "other/app"); len(r) != 0 {
		t.Fatalf("VerifyRules(other) = %d rules, want 0", len(r))
	}
	stranger := newTestKey(t)
	tampered := trusted.sign(t, simpleSigning("127.0.0.1:5000/acme/app", d))
	tampered.Payload = simpleSigning("127.0.0.1:5000/acme/evil", d)
	tests := []struct {
		name   string
		sigs   []Signature
		wantOK bool
		reason string
	}{
		{"signed by a configured key, pushed under another name", []Signature{trusted.sign(t, simpleSigning("127.0.0.1:5000/acme/app", d))}, true, "trusted.pub"},
		{"one good among bad", []Signature{stranger.sign(t, simpleSigning("x/y", d)), trusted.sign(t, simpleSigning("x/y", d))}, true, "trusted.pub"},
		{"no signature", nil, false, "no signature found"},
		{"another key", []Signature{stranger.sign(t, simpleSigning("x/y", d))}, false, "any configured key"},
		{"another manifest's signature", []Signature{trusted.sign(t, simpleSigning("x/y", elsewhere))}, false, "not this manifest"},
		{"payload changed after signing", []Signature{tampered}, false, "any configured key"},
		{"not a payload", []Signature{trusted.sign(t, []byte("{}"))}, false, "not a container image signature"},
		{"bad bundle", []Signature{{Source: "referrer x", Bundle: []byte("{}")}}, false, "bundle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vd := rules[0].Verify(d, tc.sigs)
			if vd.OK != tc.wantOK || !strings.Contains(vd.Reason, tc.reason) {
				t.Errorf("Verify = %v %q, want %v and a reason with %q", vd.OK, vd.Reason, tc.wantOK, tc.reason)
			}
		})
	}
}

func TestVerdictCache(t *testing.T) {
	k := newTestKey(t)
	p, err := New(Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/**"}, Keys: [][]byte{k.pem}, VerdictTTL: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	rule := p.VerifyRules("ghcr.io", "a/b")[0]
	d := digest.FromString("m")
	now := time.Unix(1000, 0)
	if _, ok := rule.Fresh(d, now); ok {
		t.Fatal("a verdict before any was reached")
	}
	rule.Remember(d, "set1", Verdict{OK: true, Reason: "signed"}, now)
	if vd, ok := rule.Fresh(d, now.Add(59*time.Second)); !ok || !vd.OK {
		t.Errorf("Fresh within the TTL = %v, %v", vd, ok)
	}
	if _, ok := rule.Fresh(d, now.Add(time.Minute)); ok {
		t.Error("Fresh past the TTL")
	}
	if _, ok := rule.ForSet(d, "set2", now.Add(time.Hour)); ok {
		t.Error("ForSet with another signature set")
	}
	if vd, ok := rule.ForSet(d, "set1", now.Add(time.Hour)); !ok || !vd.OK {
		t.Errorf("ForSet with the same signature set = %v, %v", vd, ok)
	}
	if _, ok := rule.Fresh(d, now.Add(time.Hour+time.Second)); !ok {
		t.Error("ForSet did not renew the verdict")
	}
}

func TestKeyContentCompareKey(t *testing.T) {
	k, other := newTestKey(t), newTestKey(t)
	p, err := New(Config{Verify: []VerifyConfig{{Patterns: []string{"a.io/**"}, Keys: [][]byte{k.pem}}}})
	if err != nil {
		t.Fatal(err)
	}
	rule := p.VerifyRules("a.io", "b")[0]
	kc := &keyContent{hint: keyHint(0)}
	pub, _ := k.signer.PublicKey()
	otherPub, _ := other.signer.PublicKey()
	if !kc.CompareKey(pub, rule.keyTrust) {
		t.Error("the configured key does not compare equal to itself")
	}
	if kc.CompareKey(otherPub, rule.keyTrust) {
		t.Error("another key compares equal to the configured one")
	}
	if (&keyContent{hint: keyHint(1)}).CompareKey(pub, rule.keyTrust) {
		t.Error("a key that is not configured compares equal")
	}
}

// TestVerdictRenewal checks which cached verdicts ForSet renews and which
// RememberParent drops: a verdict borrowed from a related manifest is
// never renewed past its TTL (its own signature set says nothing of the
// relative's), and a refusal of a platform manifest goes when an index
// that lists it is found signed.
func TestVerdictRenewal(t *testing.T) {
	k := newTestKey(t)
	now := time.Unix(1000, 0)
	child, parent := digest.FromString("child"), digest.FromString("parent")
	tests := []struct {
		name      string
		verdict   Verdict
		parentOK  bool // RememberParent(child, parent) after the verdict
		wantFresh bool // Fresh within the TTL, after RememberParent
		wantRenew bool // ForSet on the same set past the TTL
	}{
		{"own signature", Verdict{OK: true, Reason: "signed by key"}, false, true, true},
		{"own refusal", Verdict{Reason: "no signature found"}, false, true, true},
		{"borrowed from an index", Verdict{OK: true, Reason: "listed by index", Borrowed: true}, false, true, false},
		{"refusal, then a signed index lists it", Verdict{Reason: "no signature found"}, true, false, false},
		{"signature, then a signed index lists it", Verdict{OK: true, Reason: "signed by key"}, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/**"}, Keys: [][]byte{k.pem}, VerdictTTL: time.Minute}}})
			if err != nil {
				t.Fatal(err)
			}
			rule := p.VerifyRules("ghcr.io", "a/b")[0]
			rule.Remember(child, "", tc.verdict, now)
			if tc.parentOK {
				rule.RememberParent(child, parent)
			}
			if _, ok := rule.Fresh(child, now.Add(time.Second)); ok != tc.wantFresh {
				t.Errorf("Fresh = %v, want %v", ok, tc.wantFresh)
			}
			if _, ok := rule.ForSet(child, "", now.Add(time.Hour)); ok != tc.wantRenew {
				t.Errorf("ForSet past the TTL = %v, want %v", ok, tc.wantRenew)
			}
		})
	}
}
