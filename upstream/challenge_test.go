package upstream

import (
	"reflect"
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
	for _, s := range []string{`Bearer realm="a",service="b"`, `Basic realm="x", Bearer realm="y"`, `Negotiate abc==`, `a="\"`, `,,,`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		for _, ch := range ParseChallenges(header) {
			if ch.Scheme == "" || ch.Params == nil {
				t.Fatalf("ParseChallenges(%q) returned an empty challenge", header)
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

func TestParseRateLimit(t *testing.T) {
	tests := []struct {
		limit, remaining string
		want             RateLimit
		ok               bool
	}{
		{"100;w=21600", "76;w=21600", RateLimit{Limit: 100, Remaining: 76, Window: 21600e9}, true},
		{"200", "3", RateLimit{Limit: 200, Remaining: 3}, true},
		{"", "3", RateLimit{}, false},
		{"x;w=1", "3;w=1", RateLimit{}, false},
	}
	for _, tc := range tests {
		h := map[string][]string{}
		if tc.limit != "" {
			h["Ratelimit-Limit"] = []string{tc.limit}
		}
		h["Ratelimit-Remaining"] = []string{tc.remaining}
		got, ok := ParseRateLimit(h)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseRateLimit(%q, %q) = %+v, %v; want %+v, %v", tc.limit, tc.remaining, got, ok, tc.want, tc.ok)
		}
	}
}
