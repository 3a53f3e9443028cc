package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/regcache/regcache/oci"
)

// keylessSigner is a certificate authority of a private sigstore
// deployment (its trusted_root.json) and a signer's key and certificate
// for an identity, as Fulcio would issue it, but long-lived: offline,
// without a transparency log, the certificate must be valid when the
// mirror checks it.
type keylessSigner struct {
	trustedRoot    string
	key, cert, ca  string
	subject, oidcs string
	caKey          *ecdsa.PrivateKey
	caCert         *x509.Certificate
}

// newKeylessSigner makes the authority and a certificate for subject
// issued on the word of the OIDC issuer.
func newKeylessSigner(t *testing.T, subject, issuer string) keylessSigner {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "regcache test fulcio"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	s := keylessSigner{trustedRoot: filepath.Join(dir, "trusted_root.json"), ca: filepath.Join(dir, "ca.pem"), caKey: caKey, caCert: caCert}
	writeFile(t, s.ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{&root.FulcioCertificateAuthority{
		Root: caCert, ValidityPeriodStart: now.Add(-time.Hour), URI: "https://fulcio.test",
	}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.trustedRoot, string(b))
	return s.issue(t, subject, issuer)
}

// issue returns the signer with a new key and a certificate of the same
// authority for another identity.
func (s keylessSigner) issue(t *testing.T, subject, issuer string) keylessSigner {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuerExt, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(12 * time.Hour),
		EmailAddresses: []string{subject}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: certificate.OIDIssuerV2, Value: issuerExt}},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, s.caCert, &leafKey.PublicKey, s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	s.key, s.cert, s.subject, s.oidcs = filepath.Join(dir, "leaf.key"), filepath.Join(dir, "leaf.pem"), subject, issuer
	writeFile(t, s.key, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	writeFile(t, s.cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})))
	return s
}

// sign signs repo@dgst with the real cosign CLI: the signer's key,
// imported into cosign's format, and its certificate attached to the
// signature, offline.
func (s keylessSigner) sign(t *testing.T, cosign, repo, dgst string, extra ...string) {
	t.Helper()
	dir := t.TempDir()
	env := append(os.Environ(), "COSIGN_PASSWORD=test", "DOCKER_CONFIG="+t.TempDir(), "HOME="+t.TempDir())
	imp := exec.Command(cosign, "import-key-pair", "--key", s.key, "--output-key-prefix", filepath.Join(dir, "imported"))
	imp.Env = env
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("cosign import-key-pair: %v\n%s", err, out)
	}
	host := strings.TrimPrefix(hub.RegistryURL, "http://")
	args := []string{"sign", "--yes", "--key", filepath.Join(dir, "imported.key"), "--certificate", s.cert,
		"--certificate-chain", s.ca, "--tlog-upload=false", "--allow-insecure-registry"}
	args = append(append(args, extra...), host+"/"+repo+"@"+dgst)
	cmd := exec.Command(cosign, args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPolicyKeylessIdentity signs images with a certificate of a private
// sigstore authority (what keyless signing produces, made offline) and
// pulls them through a mirror that trusts one identity under that
// authority's trusted root: the identity's images pull (a cosign signature
// with the certificate attached, and a sigstore bundle); another identity's
// certificate of the same authority, or the same identity's from another
// authority, is refused.
func TestPolicyKeylessIdentity(t *testing.T) {
	cosign := clientBinary(t, "cosign")
	crane := clientBinary(t, "crane")
	release := newKeylessSigner(t, "release@acme.example", "https://issuer.acme.example")
	intruder := release.issue(t, "intruder@acme.example", "https://issuer.acme.example")
	forger := newKeylessSigner(t, release.subject, release.oidcs)
	good := pushPolicyImage(t, "keyless/good", "1", 4096)
	bad := pushPolicyImage(t, "keyless/bad", "1", 4096)
	forged := pushPolicyImage(t, "keyless/forged", "1", 4096)
	bundled := pushPolicyImage(t, "keyless/bundled", "1", 4096)
	release.sign(t, cosign, good.repo, good.digest)
	release.sign(t, cosign, bundled.repo, bundled.digest, "--new-bundle-format")
	intruder.sign(t, cosign, bad.repo, bad.digest)
	forger.sign(t, cosign, forged.repo, forged.digest)
	m := startMirror(t, siteOptions{block: fmt.Sprintf("verify docker.io/keyless/* {\n\t\t\tidentity %s %s\n\t\t\ttrusted_root %s\n\t\t}",
		release.subject, release.oidcs, release.trustedRoot)})
	runClient(t, crane, "pull", "--insecure", m.Host+"/"+good.repo+":1", filepath.Join(t.TempDir(), "i.tar"))
	runClient(t, crane, "pull", "--insecure", m.Host+"/"+bundled.repo+":1", filepath.Join(t.TempDir(), "i.tar"))
	wantDenied(t, "another identity", m.do(t, http.MethodGet, "/v2/"+bad.repo+"/manifests/1", "Accept: "+oci.AcceptHeader(oci.ManifestMediaTypes)),
		"verify#1", "not that of a configured identity")
	wantDenied(t, "another authority", m.do(t, http.MethodGet, "/v2/"+forged.repo+"/manifests/1", "Accept: "+oci.AcceptHeader(oci.ManifestMediaTypes)),
		"verify#1", "not that of a configured identity")
}
