package caddymodule

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/mirror"
)

// Verify is a signature rule: manifests (images and indexes) of the
// repositories it names are served only when they carry a valid signature
// from its trust. It guards manifests, as admission controllers do: blobs
// stay content-addressed, and a client refused the manifest never learns
// its layers from this mirror. A manifest asked for by its digest at the
// blobs endpoint is checked as a manifest.
type Verify struct {
	// Patterns are the repositories the rule applies to, with `*` within
	// one path component and `**` across components. At the top level they
	// name the registry as clients do ("ghcr.io/acme/**"); inside an
	// upstream they are relative to it ("acme/**"). Required.
	Patterns []string `json:"patterns,omitempty"`

	// Keys are files holding PEM public keys (cosign.pub); a cosign
	// signature or sigstore bundle made with any of them passes. Read
	// when the configuration loads.
	Keys []string `json:"keys,omitempty"`

	// Identities are keyless signers: a signature whose certificate was
	// issued, under trusted_root, to one of these subjects by its OIDC
	// issuer passes.
	Identities []Identity `json:"identities,omitempty"`

	// TrustedRoot is a file holding a sigstore trusted root (the
	// trusted_root.json of sigstore's TUF repository, or one of a private
	// deployment), given offline. Required with identities.
	TrustedRoot string `json:"trusted_root,omitempty"`

	// Mode is "enforce" (a manifest without a valid signature gets 403
	// DENIED with the reason) or "audit" (it is served, and the failure is
	// logged at Warn and counted). Default: enforce.
	Mode string `json:"mode,omitempty"`

	// VerdictTTL is how long a signature verdict for a manifest is reused
	// without looking up its signatures again; after it, the signatures
	// are looked up, and checked again when they changed. Default: 5m.
	VerdictTTL caddy.Duration `json:"verdict_ttl,omitempty"`
}

// Identity is a keyless signer.
type Identity struct {
	// Subject is the certificate identity: the email or URI in the
	// certificate's subject alternative name, exact. Required.
	Subject string `json:"subject"`
	// Issuer is the OIDC issuer URL recorded in the certificate, exact.
	// Required.
	Issuer string `json:"issuer"`
}

// buildPolicy turns the handler's policy options (top level, and each
// upstream's, relative to it) into the mirror's edge policy; nil when none
// is configured. Key and trusted root files are read here.
func (h *Handler) buildPolicy() (*access.Policy, error) {
	cfg := access.Config{DenyDigests: h.DenyDigest}
	absolute := func(p string) string {
		// The registry part is canonical (docker.io for its aliases).
		if reg, rest, ok := strings.Cut(p, "/"); ok && !strings.ContainsAny(reg, "*?[") {
			return mirror.CanonicalRegistry(reg) + "/" + rest
		}
		return p
	}
	var verifies []Verify
	for _, p := range h.Allow {
		cfg.Allow = append(cfg.Allow, absolute(p))
	}
	for _, p := range h.Deny {
		cfg.Deny = append(cfg.Deny, absolute(p))
	}
	for _, v := range h.Verify {
		v.Patterns = mapStrings(v.Patterns, absolute)
		verifies = append(verifies, v)
	}
	for _, u := range h.Upstreams {
		prefix := mirror.CanonicalRegistry(u.Name) + "/"
		relative := func(p string) string { return prefix + p }
		if len(u.Allow) > 0 {
			cfg.ScopedAllow = append(cfg.ScopedAllow, access.ScopedPatterns{
				Registry: mirror.CanonicalRegistry(u.Name), Patterns: mapStrings(u.Allow, relative)})
		}
		cfg.Deny = append(cfg.Deny, mapStrings(u.Deny, relative)...)
		for _, v := range u.Verify {
			v.Patterns = mapStrings(v.Patterns, relative)
			verifies = append(verifies, v)
		}
	}
	for _, v := range verifies {
		vc, err := v.config()
		if err != nil {
			return nil, err
		}
		cfg.Verify = append(cfg.Verify, vc)
	}
	return access.New(cfg)
}

// config reads a signature rule's files.
func (v Verify) config() (access.VerifyConfig, error) {
	vc := access.VerifyConfig{Patterns: v.Patterns, VerdictTTL: time.Duration(v.VerdictTTL)}
	switch v.Mode {
	case "", "enforce":
	case "audit":
		vc.Mode = access.ModeAudit
	default:
		return vc, fmt.Errorf("verify %s: mode %q is neither enforce nor audit", strings.Join(v.Patterns, " "), v.Mode)
	}
	for _, k := range v.Keys {
		pem, err := os.ReadFile(k)
		if err != nil {
			return vc, fmt.Errorf("verify %s: reading key: %w", strings.Join(v.Patterns, " "), err)
		}
		vc.Keys = append(vc.Keys, pem)
		vc.KeyNames = append(vc.KeyNames, k)
	}
	for _, id := range v.Identities {
		vc.Identities = append(vc.Identities, access.Identity{Subject: id.Subject, Issuer: id.Issuer})
	}
	if v.TrustedRoot != "" {
		b, err := os.ReadFile(v.TrustedRoot)
		if err != nil {
			return vc, fmt.Errorf("verify %s: reading trusted root: %w", strings.Join(v.Patterns, " "), err)
		}
		vc.TrustedRoot = b
	}
	return vc, nil
}

// mapStrings applies f to each of in.
func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		out = append(out, f(s))
	}
	return out
}

// unmarshalPatterns appends the remaining arguments of the line (one at
// least) to list.
func unmarshalPatterns(d *caddyfile.Dispenser, list *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*list = append(*list, args...)
	return nil
}

// unmarshalVerify reads `verify <pattern>... { … }`.
func unmarshalVerify(d *caddyfile.Dispenser) (Verify, error) {
	var v Verify
	v.Patterns = d.RemainingArgs()
	if len(v.Patterns) == 0 {
		return v, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		args := d.RemainingArgs()
		switch opt {
		case "key":
			if len(args) != 1 {
				return v, d.ArgErr()
			}
			v.Keys = append(v.Keys, args[0])
		case "identity":
			if len(args) != 2 {
				return v, d.Errf("identity needs a certificate identity and an OIDC issuer")
			}
			v.Identities = append(v.Identities, Identity{Subject: args[0], Issuer: args[1]})
		case "trusted_root":
			if len(args) != 1 {
				return v, d.ArgErr()
			}
			v.TrustedRoot = args[0]
		case "mode":
			if len(args) != 1 || (args[0] != "enforce" && args[0] != "audit") {
				return v, d.Errf("mode must be enforce or audit")
			}
			v.Mode = args[0]
		case "verdict_ttl":
			if len(args) != 1 {
				return v, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil || dur < 0 {
				return v, d.Errf("verdict_ttl: %q is not a duration", args[0])
			}
			v.VerdictTTL = caddy.Duration(dur)
		default:
			return v, d.Errf("unrecognized verify option %q", opt)
		}
	}
	if len(v.Keys) == 0 && len(v.Identities) == 0 {
		return v, d.Errf("verify %s needs a key or an identity", strings.Join(v.Patterns, " "))
	}
	return v, nil
}
