package caddymodule

import "testing"

func TestMatchRule(t *testing.T) {
	rules := []string{"alpine", "docker.io/library/nginx", "ghcr.io/owner/app:1.2"}
	tests := []struct {
		want, rule string
		ok         bool
	}{
		{"alpine", "alpine", true},
		{"docker.io/library/alpine", "alpine", true},
		{"library/alpine", "alpine", true},
		{"nginx", "docker.io/library/nginx", true},
		{"ghcr.io/owner/app:1.2", "ghcr.io/owner/app:1.2", true},
		{"ghcr.io/owner/app", "", false},
		{"alpine:3.19", "", false},
		{"quay.io/alpine", "", false},
	}
	for _, tc := range tests {
		got, ok := matchRule(rules, tc.want, "docker.io")
		if got != tc.rule || ok != tc.ok {
			t.Errorf("matchRule(%q) = %q, %v; want %q, %v", tc.want, got, ok, tc.rule, tc.ok)
		}
	}
}
