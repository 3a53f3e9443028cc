package access

import "testing"

func TestParsePatternErrors(t *testing.T) {
	tests := []struct {
		name, pattern string
	}{
		{"no repository", "docker.io"},
		{"empty component", "docker.io//x"},
		{"empty tag", "docker.io/library/x:"},
		{"double star inside a component", "ghcr.io/acme/a**"},
		{"bad class", "ghcr.io/acme/[a"},
		{"bad tag class", "ghcr.io/acme/x:[v"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParsePattern(tc.pattern); err == nil {
				t.Errorf("ParsePattern(%q) = nil error, want one", tc.pattern)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, repo, tag string
		want               bool
	}{
		{"docker.io/library/*", "docker.io/library/nginx", "", true},
		{"docker.io/library/*", "docker.io/library/a/b", "", false},
		{"docker.io/library/*", "docker.io/acme/nginx", "", false},
		{"docker.io/nginx", "docker.io/library/nginx", "", true},
		{"ghcr.io/acme/**", "ghcr.io/acme/app", "", true},
		{"ghcr.io/acme/**", "ghcr.io/acme/a/b/c", "", true},
		{"ghcr.io/acme/**", "ghcr.io/other/app", "", false},
		{"ghcr.io/**/app", "ghcr.io/app", "", true},
		{"ghcr.io/**/app", "ghcr.io/a/b/app", "", true},
		{"ghcr.io/**/app", "ghcr.io/a/b/app2", "", false},
		{"*/library/*", "quay.io/library/x", "", true},
		{"registry.example.com:5000/team/*", "registry.example.com:5000/team/app", "", true},
		{"docker.io/*/*:*-rc*", "docker.io/library/nginx", "1.27-rc1", true},
		{"docker.io/*/*:*-rc*", "docker.io/library/nginx", "1.27", false},
		{"Docker.IO/library/x", "docker.io/library/x", "", true},
		{"docker.io/library/ng?nx", "docker.io/library/nginx", "", true},
		{"docker.io/library/[a-m]*", "docker.io/library/nginx", "", false},
		// One-part Docker Hub names are official images, wildcard or not.
		{"docker.io/*", "docker.io/library/nginx", "", true},
		{"docker.io/*", "docker.io/acme/app", "", false},
		{"docker.io/ngin?", "docker.io/library/nginx", "", true},
		{"docker.io/[m-z]*:1.*", "docker.io/library/nginx", "1.27", true},
		{"docker.io/**", "docker.io/acme/app", "", true},
		{"docker.io/**", "docker.io/library/nginx", "", true},
	}
	for _, tc := range tests {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tc.pattern, err)
		}
		got := p.MatchRepository(tc.repo) && (tc.tag == "" || p.MatchTag(tc.tag))
		if got != tc.want {
			t.Errorf("%q matches %q:%q = %v, want %v", tc.pattern, tc.repo, tc.tag, got, tc.want)
		}
	}
}
