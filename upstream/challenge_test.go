package upstream

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   []Challenge
	}{
		{"docker hub", `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`,
			[]Challenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/alpine:pull"}}}},
		{"spaces and case", `  BEARER  Realm = "r" ,  Service=s  `,
			[]Challenge{{"bearer", map[string]string{"realm": "r", "service": "s"}}}},
		{"escaped quote", `Bearer realm="a\"b\\c"`, []Challenge{{"bearer", map[string]string{"realm": `a"b\c`}}}},
		{"comma in quotes", `Bearer realm="r",scope="repository:a:pull,push"`,
			[]Challenge{{"bearer", map[string]string{"realm": "r", "scope": "repository:a:pull,push"}}}},
		{"two challenges", `Basic realm="basic", Bearer realm="tok",service="svc"`,
			[]Challenge{{"basic", map[string]string{"realm": "basic"}}, {"bearer", map[string]string{"realm": "tok", "service": "svc"}}}},
		{"bearer then basic", `Bearer realm="tok", Basic realm="b"`,
			[]Challenge{{"bearer", map[string]string{"realm": "tok"}}, {"basic", map[string]string{"realm": "b"}}}},
		{"scheme only", `Negotiate`, []Challenge{{"negotiate", map[string]string{}}}},
		{"token68", `Negotiate abc==, Basic realm="x"`,
			[]Challenge{{"negotiate", map[string]string{}}, {"basic", map[string]string{"realm": "x"}}}},
		{"error param", `Bearer realm="r",error="invalid_token"`, []Challenge{{"bearer", map[string]string{"realm": "r", "error": "invalid_token"}}}},
		{"unterminated quote", `Bearer realm="r`, []Challenge{{"bearer", map[string]string{}}}},
		{"empty", ``, nil},
		{"garbage", `@@@`, nil},
		{"token68 with padding", `Basic dXNlcjpwYXNz==`, []Challenge{{"basic", map[string]string{}}}},
		{"tabs", "Bearer\trealm=\"r\",\tservice=\"s\"", []Challenge{{"bearer", map[string]string{"realm": "r", "service": "s"}}}},
		{"empty list elements", `Bearer realm="r", , service="s",, Basic realm="b"`,
			[]Challenge{{"bearer", map[string]string{"realm": "r", "service": "s"}}, {"basic", map[string]string{"realm": "b"}}}},
		{"leading commas", `, ,Bearer realm="r"`, []Challenge{{"bearer", map[string]string{"realm": "r"}}}},
		{"empty quoted value", `Bearer realm="",service=s`, []Challenge{{"bearer", map[string]string{"realm": "", "service": "s"}}}},
		{"equals inside quotes", `Bearer realm="https://h/t?a=b",scope="x=y"`,
			[]Challenge{{"bearer", map[string]string{"realm": "https://h/t?a=b", "scope": "x=y"}}}},
		{"param names lower-cased, values kept", `Bearer REALM="R",Error=Invalid_Token`,
			[]Challenge{{"bearer", map[string]string{"realm": "R", "error": "Invalid_Token"}}}},
		{"several headers joined", `Basic realm="a", Bearer realm="b",service="c", Negotiate`,
			[]Challenge{{"basic", map[string]string{"realm": "a"}}, {"bearer", map[string]string{"realm": "b", "service": "c"}}, {"negotiate", map[string]string{}}}},
		{"trailing backslash in quotes", `Bearer realm="a\`, []Challenge{{"bearer", map[string]string{}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseChallenges(tc.header); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseChallenges(%q) = %+v, want %+v", tc.header, got, tc.want)
			}
		})
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`,
		`Basic realm="x", Bearer realm="y"`, `Negotiate abc==`, `a="\"`, `,,,`, `Bearer realm="a\"b,c"`, "\x00=\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		for _, ch := range ParseChallenges(header) {
			if ch.Scheme == "" || ch.Params == nil || ch.Scheme != strings.ToLower(ch.Scheme) {
				t.Fatalf("ParseChallenges(%q) returned a bad challenge %+v", header, ch)
			}
			for name := range ch.Params {
				if name == "" || name != strings.ToLower(name) {
					t.Fatalf("ParseChallenges(%q) returned a bad param name %q", header, name)
				}
			}
		}
	})
}

func BenchmarkParseChallenge(b *testing.B) {
	b.ReportAllocs()
	h := `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`
	for b.Loop() {
		if len(ParseChallenges(h)) != 1 {
			b.Fatal("no challenge")
		}
	}
}
