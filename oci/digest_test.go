package oci

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"sha256", digestA, true},
		{"sha256 mixed digits", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"sha512", digest512, true},
		{"63 hex", "sha256:" + hexA[:63], false},
		{"65 hex", "sha256:" + hexA + "a", false},
		{"sha512 with 64 hex", "sha512:" + hexA, false},
		{"sha256 with 128 hex", "sha256:" + hexA + hexA, false},
		{"non-hex letter", "sha256:" + strings.Replace(hexA, "a", "g", 1), false},
		{"uppercase hex", "sha256:" + strings.ToUpper(hexA), false},
		{"one uppercase", "sha256:A" + hexA[1:], false},
		{"md5", "md5:" + hexA[:32], false},
		{"sha384", "sha384:" + strings.Repeat("a", 96), false},
		{"uppercase algorithm", "SHA256:" + hexA, false},
		{"no colon", "sha256", false},
		{"empty algorithm", ":" + hexA, false},
		{"empty hex", "sha256:", false},
		{"empty", "", false},
		{"two colons", "sha256:" + hexA[:32] + ":" + hexA[:31], false},
		{"trailing newline", digestA + "\n", false},
		{"leading space", " " + digestA, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDigest(tc.in)
			if !tc.ok {
				checkError(t, "ParseDigest("+truncate(tc.in)+")", err, CodeDigestInvalid, http.StatusBadRequest)
				if d != "" {
					t.Errorf("ParseDigest(%q) returned %q with its error", tc.in, d)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDigest(%q) = %v", tc.in, err)
			}
			if d.String() != tc.in || d.Validate() != nil || !d.Algorithm().Available() {
				t.Errorf("ParseDigest(%q) = %q (validate: %v, available: %v)", tc.in, d, d.Validate(), d.Algorithm().Available())
			}
			if digestRE.MatchString(tc.in) != tc.ok {
				t.Errorf("test table disagrees with the grammar for %q", tc.in)
			}
		})
	}
}

func TestParseDigestVerifies(t *testing.T) {
	for _, in := range []string{"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
		"sha512:9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043"} {
		d, err := ParseDigest(in)
		if err != nil {
			t.Fatalf("ParseDigest(%q) = %v", in, err)
		}
		v := d.Verifier()
		if _, err := v.Write([]byte("hello")); err != nil || !v.Verified() {
			t.Errorf("digest %s does not verify \"hello\" (%v)", d, err)
		}
	}
}

func BenchmarkParseDigest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDigest(digestA); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	for _, seed := range []string{
		"sha256:" + strings.Repeat("a", 64), "sha512:" + strings.Repeat("0", 128), "sha256:" + strings.Repeat("A", 64),
		"sha384:" + strings.Repeat("a", 96), "sha256:", ":", "sha256:abc", "sha256:../../etc/passwd",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if ok := err == nil; ok != digestRE.MatchString(s) {
			t.Fatalf("ParseDigest(%q) ok=%v, grammar says %v", s, ok, !ok)
		}
		if err != nil {
			var oe *Error
			if !errors.As(err, &oe) || oe.Status != http.StatusBadRequest || oe.Code() != CodeDigestInvalid {
				t.Fatalf("ParseDigest(%q) error %v is not a 400 DIGEST_INVALID", s, err)
			}
			return
		}
		if d.String() != s || d.Validate() != nil {
			t.Fatalf("ParseDigest(%q) = %q, which go-digest rejects: %v", s, d, d.Validate())
		}
	})
}
