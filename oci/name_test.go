package oci

import (
	"net/http"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"library/alpine", true},
		{"a", true},
		{"a.b/c_d/e__f/g-h/i--j", true},
		{"a---b", true},
		{"0/9", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a/", 127) + "a", true},
		{"ghcr.io/owner", true}, // a dotted component is also a name component
		{strings.Repeat("a", 256), false},
		{strings.Repeat("a/", 128), false},
		{"", false},
		{"A", false},
		{"library/Alpine", false},
		{"a/", false},
		{"/a", false},
		{"a//b", false},
		{"a..b", false},
		{"a._b", false},
		{"a_.b", false},
		{"a.", false},
		{".a", false},
		{"-a", false},
		{"a-", false},
		{"a_", false},
		{"a___b", false},
		{"a b", false},
		{"a%2fb", false},
		{"..", false},
		{"a/../b", false},
		{"localhost:5000/x", false},
		{"a:b", false},
		{"caf\xc3\xa9", false},
	}
	for _, tc := range tests {
		t.Run(truncate(tc.name), func(t *testing.T) {
			err := ValidateName(tc.name)
			if tc.ok {
				if err != nil {
					t.Errorf("ValidateName(%q) = %v, want nil", tc.name, err)
				}
			} else {
				checkError(t, "ValidateName("+truncate(tc.name)+")", err, CodeNameInvalid, http.StatusBadRequest)
			}
			if grammarName(tc.name, false) != tc.ok {
				t.Errorf("test table disagrees with the grammar for %q", tc.name)
			}
		})
	}
}

func TestValidateClientName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"library/alpine", true},
		{"ghcr.io/owner/app", true},
		{"localhost/x", true},
		{"localhost:5000/x", true},
		{"registry:5000/x/y", true},
		{"10.0.0.1:5000/x", true},
		{"a-.b/x", true}, // the host grammar allows it; DNS does not, and no upstream will match
		{"a_b.c/x", true},
		{"ghcr.io", true},
		{"ghcr.io/" + strings.Repeat("a", 247), true},
		{"ghcr.io/" + strings.Repeat("a", 248), false},
		{"localhost:5000", false},
		{"Localhost/x", false},
		{"ghcr.io:/x", false},
		{"ghcr.io:123456/x", false},
		{"ghcr.io:5o00/x", false},
		{"a..b/x", false},
		{".ghcr.io/x", false},
		{"ghcr.io-/x", false},
		{"ghcr.io/Owner", false},
		{"ghcr.io/a:1/b", false},
		{"a_b:1/x", false},
		{"ghcr.io//x", false},
		{"ghcr.io/", false},
		{"", false},
	}
	for _, tc := range tests {
		t.Run(truncate(tc.name), func(t *testing.T) {
			err := validateClientName(tc.name)
			if tc.ok {
				if err != nil {
					t.Errorf("validateClientName(%q) = %v, want nil", tc.name, err)
				}
			} else {
				checkError(t, "validateClientName("+truncate(tc.name)+")", err, CodeNameInvalid, http.StatusBadRequest)
			}
			if grammarName(tc.name, true) != tc.ok {
				t.Errorf("test table disagrees with the grammar for %q", tc.name)
			}
		})
	}
}

// TestNameGrammarExhaustive compares the hand-written grammar with the
// regular expressions on every string of up to five bytes over an alphabet
// holding each kind of character the grammar distinguishes.
func TestNameGrammarExhaustive(t *testing.T) {
	const alphabet = "a0A._-/:"
	var walk func(prefix []byte, depth int)
	walk = func(prefix []byte, depth int) {
		s := string(prefix)
		if got, want := ValidateName(s) == nil, grammarName(s, false); got != want {
			t.Errorf("ValidateName(%q) ok=%v, grammar says %v", s, got, want)
		}
		if got, want := validateClientName(s) == nil, grammarName(s, true); got != want {
			t.Errorf("validateClientName(%q) ok=%v, grammar says %v", s, got, want)
		}
		if depth == 0 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			walk(append(prefix, alphabet[i]), depth-1)
		}
	}
	walk(nil, 5)
}

func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"library/alpine", "a__b/c--d", "a___b", "ghcr.io/x", "localhost:5000/x", "a..b/c", "A/b", "a/"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := ValidateName(name) == nil, grammarName(name, false); got != want {
			t.Fatalf("ValidateName(%q) ok=%v, grammar says %v", name, got, want)
		}
		if got, want := validateClientName(name) == nil, grammarName(name, true); got != want {
			t.Fatalf("validateClientName(%q) ok=%v, grammar says %v", name, got, want)
		}
		if got, want := ValidateTag(name) == nil, tagRE.MatchString(name); got != want {
			t.Fatalf("ValidateTag(%q) ok=%v, grammar says %v", name, got, want)
		}
	})
}

func TestValidateTag(t *testing.T) {
	tests := []struct {
		tag string
		ok  bool
	}{
		{"latest", true},
		{"V1.2.3-rc_1", true},
		{"_x", true},
		{"0", true},
		{"a..b", true},
		{"a--", true},
		{strings.Repeat("t", 128), true},
		{"", false},
		{".x", false},
		{"-x", false},
		{strings.Repeat("t", 129), false},
		{"a:b", false},
		{"a/b", false},
		{"a b", false},
		{"a+b", false},
		{"a\r\nb", false},
		{"a%2e", false},
		{"caf\xc3\xa9", false},
	}
	for _, tc := range tests {
		t.Run(truncate(tc.tag), func(t *testing.T) {
			err := ValidateTag(tc.tag)
			if tc.ok {
				if err != nil {
					t.Errorf("ValidateTag(%q) = %v, want nil", tc.tag, err)
				}
			} else {
				checkError(t, "ValidateTag("+truncate(tc.tag)+")", err, CodeTagInvalid, http.StatusBadRequest)
			}
			if tagRE.MatchString(tc.tag) != tc.ok {
				t.Errorf("test table disagrees with the grammar for %q", tc.tag)
			}
		})
	}
}

func TestSplitHost(t *testing.T) {
	tests := []struct {
		name, host, rest string
		ok               bool
	}{
		{"ghcr.io/owner/app", "ghcr.io", "owner/app", true},
		{"docker.io/library/alpine", "docker.io", "library/alpine", true},
		{"localhost/x", "localhost", "x", true},
		{"localhost:5000/x", "localhost:5000", "x", true},
		{"registry:5000/x", "registry:5000", "x", true},
		{"a_b.c/x", "a_b.c", "x", true},
		{"library/alpine", "", "library/alpine", false},
		{"localhostx/y", "", "localhostx/y", false},
		{"ghcr.io", "", "ghcr.io", false},
		{"ghcr.io/", "", "ghcr.io/", false},
		{"alpine", "", "alpine", false},
		{"", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, rest, ok := SplitHost(tc.name)
			if host != tc.host || rest != tc.rest || ok != tc.ok {
				t.Errorf("SplitHost(%q) = %q, %q, %v; want %q, %q, %v", tc.name, host, rest, ok, tc.host, tc.rest, tc.ok)
			}
		})
	}
}

func BenchmarkValidateName(b *testing.B) {
	names := []struct{ name, repo string }{
		{"short", "library/alpine"},
		{"long", "organisation/team-name/some-application_name/sub.component__x"},
	}
	for _, n := range names {
		b.Run(n.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := ValidateName(n.repo); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
