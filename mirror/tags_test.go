package mirror

import "testing"

func TestRewriteLink(t *testing.T) {
	tests := []struct {
		name, link, clientName, ns, want string
	}{
		{"docker hub library name", `</v2/library/alpine/tags/list?last=b&n=2>; rel="next"`, "alpine", "",
			`</v2/alpine/tags/list?last=b&n=2>; rel="next"`},
		{"path prefix kept", `</v2/owner/app/tags/list?last=x&n=10>; rel="next"`, "ghcr.io/owner/app", "",
			`</v2/ghcr.io/owner/app/tags/list?last=x&n=10>; rel="next"`},
		{"ns kept", `</v2/library/alpine/tags/list?n=1&last=a>; rel="next"`, "library/alpine", "docker.io",
			`</v2/library/alpine/tags/list?last=a&n=1&ns=docker.io>; rel="next"`},
		{"absolute upstream URL", `<https://registry.example/v2/x/tags/list?last=c>; rel="next"`, "x", "",
			`</v2/x/tags/list?last=c>; rel="next"`},
		{"upstream ns replaced", `</v2/x/tags/list?last=c&ns=evil>; rel="next"`, "x", "",
			`</v2/x/tags/list?last=c>; rel="next"`},
		{"no brackets", `garbage`, "x", "", ""},
		{"reversed brackets", `>x<`, "x", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rewriteLink(tc.link, tc.clientName, "tags/list", tc.ns); got != tc.want {
				t.Errorf("rewriteLink(%q, %q, %q) = %q, want %q", tc.link, tc.clientName, tc.ns, got, tc.want)
			}
		})
	}
}
