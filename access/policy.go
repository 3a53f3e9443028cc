package access

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
)

// Config is an edge policy. Patterns are absolute
// (REGISTRY/REPOSITORY[:TAG]); a configuration that writes them relative
// to an upstream prefixes the registry before handing them here.
type Config struct {
	// Allow lists the repositories (and tags) that may be served, of
	// every registry. When any is given, everything else is denied.
	Allow []string
	// ScopedAllow are allow lists that govern one registry each: a
	// request to that registry must match one of them or of Allow; other
	// registries are not affected by them.
	ScopedAllow []ScopedPatterns
	// Deny lists repositories (and tags) that are never served. Deny wins
	// over allow.
	Deny []string
	// DenyDigests are digests never served, under any repository or tag:
	// manifests and blobs alike.
	DenyDigests []string
	// Verify are the signature rules.
	Verify []VerifyConfig
}

// ScopedPatterns are patterns that apply to the requests of one registry.
type ScopedPatterns struct {
	// Registry is the registry the patterns govern, as requests name it
	// (canonical: docker.io).
	Registry string
	// Patterns are absolute, as those of Config.Allow.
	Patterns []string
}

// Rule is one rule of a policy, with its refusal counters.
type Rule struct {
	// ID names the rule in messages, logs and metrics: its kind and its
	// 1-based position among the rules of that kind ("deny#2"), or
	// "allow" for the refusal of what no allow rule lists.
	ID string
	// Kind is allow, deny, deny_digest or verify.
	Kind string
	// Text is the rule as configured: a pattern or a digest.
	Text string

	refused atomic.Int64
	audited atomic.Int64
}

// CountRefusal counts one request this rule refused.
func (r *Rule) CountRefusal() { r.refused.Add(1) }

// CountAudit counts one request this rule would have refused, served in
// audit mode.
func (r *Rule) CountAudit() { r.audited.Add(1) }

// RuleStats are the counters of one rule.
type RuleStats struct {
	// ID, Kind and Text are the rule's (see Rule).
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Text string `json:"text"`
	// Mode is enforce or audit for verify rules, else enforce.
	Mode string `json:"mode"`
	// Refused counts the requests refused by this rule.
	Refused int64 `json:"refused"`
	// Audited counts the requests that failed this rule and were served
	// because it is in audit mode.
	Audited int64 `json:"audited"`
}

// patternRule is an allow or deny rule.
type patternRule struct {
	rule    *Rule
	pattern Pattern
	// registry limits an allow rule to the requests of one registry
	// (lowercase); "" applies it to every registry.
	registry string
}

// Policy is a parsed edge policy. A nil *Policy allows everything. It is
// safe for concurrent use.
type Policy struct {
	allow   []patternRule
	deny    []patternRule
	digests map[digest.Digest]*Rule
	verify  []*VerifyRule
	// notAllowed is the rule that refuses what no allow rule lists.
	notAllowed *Rule
	rules      []*Rule
}

// Decision is the answer of Check.
type Decision struct {
	// Allowed is false when a rule refuses the request.
	Allowed bool
	// Rule is the refusing rule; nil when allowed.
	Rule *Rule
}

// Message is a refusal's explanation for the client, naming the rule.
func (d Decision) Message() string {
	if d.Allowed || d.Rule == nil {
		return ""
	}
	switch d.Rule.Kind {
	case "allow":
		return "denied by policy rule allow: the repository is not on the allow list"
	case "deny_digest":
		return fmt.Sprintf("denied by policy rule %s: digest %s is blocked", d.Rule.ID, d.Rule.Text)
	}
	return fmt.Sprintf("denied by policy rule %s (%s %s)", d.Rule.ID, d.Rule.Kind, d.Rule.Text)
}

// New parses cfg. Every pattern, digest, key and trusted root is checked:
// an error names the faulty one.
func New(cfg Config) (*Policy, error) {
	p := &Policy{digests: map[digest.Digest]*Rule{}}
	addAllow := func(s, registry string) error {
		pat, err := ParsePattern(s)
		if err != nil {
			return fmt.Errorf("allow: %w", err)
		}
		r := &Rule{ID: fmt.Sprintf("allow#%d", len(p.allow)+1), Kind: "allow", Text: s}
		p.allow = append(p.allow, patternRule{rule: r, pattern: pat, registry: strings.ToLower(registry)})
		return nil
	}
	for _, s := range cfg.Allow {
		if err := addAllow(s, ""); err != nil {
			return nil, err
		}
	}
	for _, sc := range cfg.ScopedAllow {
		for _, s := range sc.Patterns {
			if err := addAllow(s, sc.Registry); err != nil {
				return nil, err
			}
		}
	}
	if len(p.allow) > 0 {
		p.notAllowed = &Rule{ID: "allow", Kind: "allow", Text: "(not on the allow list)"}
		p.rules = append(p.rules, p.notAllowed)
	}
	for i, s := range cfg.Deny {
		pat, err := ParsePattern(s)
		if err != nil {
			return nil, fmt.Errorf("deny: %w", err)
		}
		r := &Rule{ID: fmt.Sprintf("deny#%d", i+1), Kind: "deny", Text: s}
		p.deny = append(p.deny, patternRule{rule: r, pattern: pat})
		p.rules = append(p.rules, r)
	}
	for i, s := range cfg.DenyDigests {
		d, err := digest.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("deny_digest %q: %w", s, err)
		}
		r := &Rule{ID: fmt.Sprintf("deny_digest#%d", i+1), Kind: "deny_digest", Text: s}
		p.digests[d] = r
		p.rules = append(p.rules, r)
	}
	for i, vc := range cfg.Verify {
		vr, err := newVerifyRule(fmt.Sprintf("verify#%d", i+1), vc)
		if err != nil {
			return nil, err
		}
		p.verify = append(p.verify, vr)
		p.rules = append(p.rules, &vr.Rule)
	}
	if len(p.rules) == 0 {
		return nil, nil
	}
	return p, nil
}

// Check decides whether a request for a repository of a registry may be
// served, before anything is fetched. ref is a tag, a digest (of a
// manifest or a blob), or "" for the repository as a whole (its tag list,
// a catalog entry). In order: a blocked digest is refused; a deny rule
// whose repository matches refuses (a rule with a tag only a request by a
// matching tag); when allow rules exist, the repository must match one (a
// rule with a tag also limits the tags that resolve; content by digest of
// the repository stays reachable); the allow rules that apply are those
// of every registry and those scoped to this one, and a registry that
// none applies to is open. Signatures are checked separately, once the
// manifest is known (VerifyRules).
func (p *Policy) Check(registry, repo, ref string) Decision {
	if p == nil {
		return Decision{Allowed: true}
	}
	tag := ""
	if strings.Contains(ref, ":") {
		if r := p.digests[digest.Digest(ref)]; r != nil {
			return Decision{Rule: r}
		}
	} else {
		tag = ref
	}
	name := splitName(registry, repo)
	for _, d := range p.deny {
		if !d.pattern.matchComponents(name) {
			continue
		}
		if !d.pattern.HasTag() || (tag != "" && d.pattern.MatchTag(tag)) {
			return Decision{Rule: d.rule}
		}
	}
	listed := false
	for _, a := range p.allow {
		if a.registry != "" && a.registry != name[0] {
			continue
		}
		listed = true
		if a.pattern.matchComponents(name) && (tag == "" || a.pattern.MatchTag(tag)) {
			return Decision{Allowed: true}
		}
	}
	if !listed {
		return Decision{Allowed: true}
	}
	return Decision{Rule: p.notAllowed}
}

// CheckDigest decides whether content of digest d may be served under any
// name: a deny_digest rule refuses it.
func (p *Policy) CheckDigest(d digest.Digest) Decision {
	if p == nil {
		return Decision{Allowed: true}
	}
	if r := p.digests[d]; r != nil {
		return Decision{Rule: r}
	}
	return Decision{Allowed: true}
}

// VerifyRules returns the signature rules that apply to a repository;
// each must pass (or be in audit mode) for a manifest to be served.
func (p *Policy) VerifyRules(registry, repo string) []*VerifyRule {
	if p == nil || len(p.verify) == 0 {
		return nil
	}
	name := splitName(registry, repo)
	var out []*VerifyRule
	for _, v := range p.verify {
		if v.matches(name) {
			out = append(out, v)
		}
	}
	return out
}

// splitName splits registry/repository into path components, the
// registry lowercased.
func splitName(registry, repo string) []string {
	return append([]string{strings.ToLower(registry)}, strings.Split(repo, "/")...)
}

// Stats returns the counters of every rule, in configuration order.
func (p *Policy) Stats() []RuleStats {
	if p == nil {
		return nil
	}
	out := make([]RuleStats, 0, len(p.rules))
	for _, r := range p.rules {
		mode := "enforce"
		for _, v := range p.verify {
			if &v.Rule == r && v.mode == ModeAudit {
				mode = "audit"
			}
		}
		out = append(out, RuleStats{ID: r.ID, Kind: r.Kind, Text: r.Text, Mode: mode,
			Refused: r.refused.Load(), Audited: r.audited.Load()})
	}
	return out
}
