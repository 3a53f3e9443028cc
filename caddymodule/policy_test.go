package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestBuildPolicy(t *testing.T) {
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &Handler{
		Deny: []string{"index.docker.io/library/x"},
		Upstreams: []Upstream{{Name: "registry-1.docker.io", Deny: []string{"library/y", "nginx"},
			Verify: []Verify{{Patterns: []string{"acme/*"}, Keys: []string{key}}}}},
	}
	p, err := h.buildPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ repo, rule string }{{"library/x", "deny#1"}, {"library/y", "deny#2"}, {"library/nginx", "deny#3"}} {
		if d := p.Check("docker.io", tc.repo, "latest"); d.Allowed || d.Rule.ID != tc.rule {
			t.Errorf("docker.io/%s: allowed %v by %v, want refused by %s", tc.repo, d.Allowed, d.Rule, tc.rule)
		}
	}
	// An upstream's allow list governs that upstream only.
	ah := &Handler{Upstreams: []Upstream{{Name: "ghcr.io", Allow: []string{"acme/*"}}, {Name: "quay.io"}}}
	ap, err := ah.buildPolicy()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		registry, repo string
		allowed        bool
	}{{"ghcr.io", "acme/app", true}, {"ghcr.io", "other/app", false}, {"quay.io", "any/app", true}, {"docker.io", "library/nginx", true}} {
		if got := ap.Check(tc.registry, tc.repo, "latest").Allowed; got != tc.allowed {
			t.Errorf("upstream allow: %s/%s allowed = %v, want %v", tc.registry, tc.repo, got, tc.allowed)
		}
	}
	if rules := p.VerifyRules("docker.io", "acme/app"); len(rules) != 1 || rules[0].ID != "verify#1" {
		t.Errorf("verify rules of docker.io/acme/app: %v", rules)
	}

	bad := []struct {
		name string
		h    Handler
		want string
	}{
		{"bad pattern", Handler{Allow: []string{"nginx"}}, "registry"},
		{"missing key", Handler{Verify: []Verify{{Patterns: []string{"a.io/b"}, Keys: []string{filepath.Join(dir, "absent.pub")}}}}, "reading key"},
		{"missing trusted root", Handler{Verify: []Verify{{Patterns: []string{"a.io/b"}, Identities: []Identity{{"a@b", "https://i"}}, TrustedRoot: filepath.Join(dir, "absent.json")}}}, "trusted root"},
		{"bad mode", Handler{Verify: []Verify{{Patterns: []string{"a.io/b"}, Keys: []string{key}, Mode: "lenient"}}}, "mode"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.h.buildPolicy(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("buildPolicy = %v, want an error about %q", err, tc.want)
			}
		})
	}

	// A bad policy fails the load before the cache opens.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	bh := &Handler{Storage: filepath.Join(dir, "cache"), Deny: []string{"x"}}
	if err := bh.Provision(ctx); err == nil || !strings.Contains(err.Error(), "policy") {
		t.Errorf("Provision with a bad pattern = %v, want a policy error", err)
	}
	_ = bh.Cleanup()
	if _, ok := stores.References(filepath.Join(dir, "cache")); ok {
		t.Error("the cache was opened for a config whose policy is bad")
	}
}
