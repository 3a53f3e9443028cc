package access

import (
	"strings"
	"testing"
)

const blocked = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func TestCheck(t *testing.T) {
	tests := []struct {
		name                string
		cfg                 Config
		registry, repo, ref string
		wantRule            string // "" when allowed
	}{
		{"no rules", Config{DenyDigests: []string{blocked}}, "docker.io", "library/nginx", "latest", ""},
		{"blocked digest", Config{DenyDigests: []string{blocked}}, "docker.io", "library/nginx", blocked, "deny_digest#1"},
		{"blocked digest anywhere", Config{DenyDigests: []string{blocked}}, "ghcr.io", "x/y", blocked, "deny_digest#1"},
		{"deny repository", Config{Deny: []string{"docker.io/library/forbidden"}}, "docker.io", "library/forbidden", "latest", "deny#1"},
		{"deny repository by digest", Config{Deny: []string{"docker.io/library/forbidden"}}, "docker.io", "library/forbidden", blocked[:7] + strings.Repeat("2", 64), "deny#1"},
		{"deny wildcard official image", Config{Deny: []string{"docker.io/*"}}, "docker.io", "library/nginx", "latest", "deny#1"},
		{"deny other", Config{Deny: []string{"docker.io/library/forbidden"}}, "docker.io", "library/nginx", "latest", ""},
		{"deny tag", Config{Deny: []string{"docker.io/*/*:*-rc*"}}, "docker.io", "library/nginx", "2-rc1", "deny#1"},
		{"deny tag spares others", Config{Deny: []string{"docker.io/*/*:*-rc*"}}, "docker.io", "library/nginx", "2", ""},
		{"deny tag spares tag lists", Config{Deny: []string{"docker.io/*/*:*-rc*"}}, "docker.io", "library/nginx", "", ""},
		{"second deny", Config{Deny: []string{"ghcr.io/x/*", "docker.io/library/bad"}}, "docker.io", "library/bad", "", "deny#2"},
		{"allow listed", Config{Allow: []string{"docker.io/library/*", "ghcr.io/acme/**"}}, "ghcr.io", "acme/a/b", "v1", ""},
		{"allow unlisted", Config{Allow: []string{"docker.io/library/*"}}, "ghcr.io", "acme/app", "v1", "allow"},
		{"deny wins", Config{Allow: []string{"docker.io/library/*"}, Deny: []string{"docker.io/library/forbidden"}}, "docker.io", "library/forbidden", "latest", "deny#1"},
		{"allow with tag", Config{Allow: []string{"docker.io/library/nginx:1.*"}}, "docker.io", "library/nginx", "2.0", "allow"},
		{"scoped allow listed", Config{ScopedAllow: []ScopedPatterns{{Registry: "ghcr.io", Patterns: []string{"ghcr.io/acme/*"}}}}, "ghcr.io", "acme/app", "v1", ""},
		{"scoped allow unlisted", Config{ScopedAllow: []ScopedPatterns{{Registry: "ghcr.io", Patterns: []string{"ghcr.io/acme/*"}}}}, "ghcr.io", "other/app", "v1", "allow"},
		{"scoped allow spares other registries", Config{ScopedAllow: []ScopedPatterns{{Registry: "ghcr.io", Patterns: []string{"ghcr.io/acme/*"}}}}, "docker.io", "library/nginx", "latest", ""},
		{"scoped allow and top level allow", Config{Allow: []string{"quay.io/x/*"}, ScopedAllow: []ScopedPatterns{{Registry: "ghcr.io", Patterns: []string{"ghcr.io/acme/*"}}}}, "docker.io", "library/nginx", "latest", "allow"},
		{"top level allow under a scoped registry", Config{Allow: []string{"*/shared/*"}, ScopedAllow: []ScopedPatterns{{Registry: "ghcr.io", Patterns: []string{"ghcr.io/acme/*"}}}}, "ghcr.io", "shared/app", "v1", ""},
		{"scoped allow of another registry does not apply", Config{ScopedAllow: []ScopedPatterns{{Registry: "quay.io", Patterns: []string{"quay.io/acme/*"}}, {Registry: "ghcr.io", Patterns: []string{"ghcr.io/acme/*"}}}}, "ghcr.io", "other/app", "v1", "allow"},
		{"allow with tag by digest", Config{Allow: []string{"docker.io/library/nginx:1.*"}}, "docker.io", "library/nginx", blocked[:7] + strings.Repeat("3", 64), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Check(tc.registry, tc.repo, tc.ref)
			got := ""
			if !d.Allowed {
				got = d.Rule.ID
				if !strings.Contains(d.Message(), "denied by policy") {
					t.Errorf("message %q does not say it is the policy", d.Message())
				}
			}
			if got != tc.wantRule {
				t.Errorf("Check(%s, %s, %s) refused by %q, want %q", tc.registry, tc.repo, tc.ref, got, tc.wantRule)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad allow", Config{Allow: []string{"nginx"}}, "allow"},
		{"bad digest", Config{DenyDigests: []string{"sha256:xyz"}}, "deny_digest"},
		{"verify without trust", Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/a/*"}}}}, "key or an identity"},
		{"verify with tag", Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/a/*:v1"}, Keys: [][]byte{[]byte("x")}}}}, "not tags"},
		{"verify bad key", Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/a/*"}, Keys: [][]byte{[]byte("not pem")}}}}, "key"},
		{"identity without root", Config{Verify: []VerifyConfig{{Patterns: []string{"ghcr.io/a/*"}, Identities: []Identity{{"a@b", "https://i"}}}}}, "trusted_root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestNilPolicyAllows(t *testing.T) {
	p, err := New(Config{})
	if err != nil || p != nil {
		t.Fatalf("New(empty) = %v, %v; want nil, nil", p, err)
	}
	if !p.Check("docker.io", "library/x", "latest").Allowed || p.VerifyRules("docker.io", "library/x") != nil || p.Stats() != nil {
		t.Error("a nil policy refused something")
	}
}
