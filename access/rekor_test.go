package access

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// TestVerifyKeylessWithRekorBundle checks keyless cosign signatures as the
// public sigstore deployment makes them: a short-lived certificate, and a
// transparency log's signed entry timestamp (cosign's bundle annotation)
// that says when it was logged. sigstore-go's virtual sigstore plays the
// certificate authority and the log.
func TestVerifyKeylessWithRekorBundle(t *testing.T) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	// The virtual log's ID is its hex form's bytes; a trusted root holds
	// the raw ID, as sigstore's does.
	logs := vs.RekorLogs()
	for _, l := range logs {
		raw, err := hex.DecodeString(string(l.ID))
		if err != nil {
			t.Fatal(err)
		}
		l.ID = raw
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(), vs.TimestampingAuthorities(), logs)
	if err != nil {
		t.Fatal(err)
	}
	trJSON, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	const subject, issuer = "release@acme.example", "https://issuer.acme.example"
	p, err := New(Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/acme/*"}, TrustedRoot: trJSON,
		Identities: []Identity{{Subject: subject, Issuer: issuer}}}}})
	if err != nil {
		t.Fatal(err)
	}
	rule := p.VerifyRules("ghcr.io", "acme/app")[0]
	d := digest.FromString("manifest")

	sign := func(subject string) Signature {
		t.Helper()
		payload := simpleSigning("ghcr.io/acme/app", d)
		ent, err := vs.Sign(subject, issuer, payload)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ent.SignatureContent()
		if err != nil {
			t.Fatal(err)
		}
		vc, err := ent.VerificationContent()
		if err != nil {
			t.Fatal(err)
		}
		certPEM, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
		if err != nil {
			t.Fatal(err)
		}
		entries, err := ent.TlogEntries()
		if err != nil || len(entries) != 1 {
			t.Fatalf("tlog entries %v, %v", entries, err)
		}
		tle := entries[0].TransparencyLogEntry()
		var rb rekorBundle
		rb.Payload.Body = base64.StdEncoding.EncodeToString(tle.CanonicalizedBody)
		rb.Payload.IntegratedTime = tle.IntegratedTime
		rb.Payload.LogIndex = tle.LogIndex
		rb.Payload.LogID = hex.EncodeToString(tle.LogId.KeyId)
		// The log's signature over the entry, as cosign receives it.
		set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: rb.Payload.Body, IntegratedTime: rb.Payload.IntegratedTime,
			LogIndex: rb.Payload.LogIndex, LogID: rb.Payload.LogID})
		if err != nil {
			t.Fatal(err)
		}
		rb.SignedEntryTimestamp = base64.StdEncoding.EncodeToString(set)
		rbJSON, err := json.Marshal(rb)
		if err != nil {
			t.Fatal(err)
		}
		return Signature{Source: "tag x.sig", Payload: payload, Signature: sc.Signature(), Certificate: certPEM, RekorBundle: rbJSON}
	}
	good := sign(subject)
	badSET := good
	var rb rekorBundle
	if err := json.Unmarshal(good.RekorBundle, &rb); err != nil {
		t.Fatal(err)
	}
	set, _ := base64.StdEncoding.DecodeString(rb.SignedEntryTimestamp)
	set[len(set)/2] ^= 0xff
	rb.SignedEntryTimestamp = base64.StdEncoding.EncodeToString(set)
	badSET.RekorBundle, _ = json.Marshal(rb)
	otherEntry := good
	otherEntry.RekorBundle = sign(subject).RekorBundle // another signature's log entry

	tests := []struct {
		name   string
		sig    Signature
		wantOK bool
		reason string
	}{
		{"logged signature of the identity", good, true, "identity " + subject},
		{"another identity", sign("intruder@acme.example"), false, "not that of a configured identity"},
		{"forged signed entry timestamp", badSET, false, "log entries"},
		{"another signature's log entry", otherEntry, false, "transparency log"},
		{"bundle that is not JSON", Signature{Source: "x", Payload: good.Payload, Signature: good.Signature, Certificate: good.Certificate, RekorBundle: []byte("{")}, false, "not JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vd := rule.Verify(d, []Signature{tc.sig})
			if vd.OK != tc.wantOK || !strings.Contains(vd.Reason, tc.reason) {
				t.Errorf("Verify = %v %q, want %v and a reason with %q", vd.OK, vd.Reason, tc.wantOK, tc.reason)
			}
		})
	}
}
