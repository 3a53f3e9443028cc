package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults and bounds of rules.
const (
	// DefaultEvery is how often a rule runs when Rule.Every is zero.
	DefaultEvery = 6 * time.Hour
	// MinEvery is the shortest interval a rule may have.
	MinEvery = time.Minute
	// firstDelay is the least time between the scheduler's start and a
	// rule's first run, so that a server is up (and a config reload
	// settled) before syncs begin.
	firstDelay = time.Minute
	// maxFirstJitter bounds the random delay added to firstDelay.
	maxFirstJitter = 5 * time.Minute
)

// Rule is one sync rule.
type Rule struct {
	// Name is the image (docker.io/library/alpine:3.19, …@sha256:…) or
	// repository (docker.io/library/alpine) as configured; it names the
	// rule too.
	Name string
	// Tags choose tags by name: globs, or ~REGEX (see Selector). Only for
	// a repository.
	Tags []string
	// Semver are version constraints that must all hold (see Selector).
	// Only for a repository.
	Semver []string
	// Newest keeps the N highest versions only; 0: no limit. Only for a
	// repository.
	Newest int
	// Platforms limit multi-platform images to these (os/arch[/variant]);
	// none: every platform.
	Platforms []string
	// Every is the interval between runs, each jittered by up to a tenth
	// either way; the first run comes a minute after the scheduler starts,
	// plus up to a tenth of it (at most five minutes). Default:
	// DefaultEvery.
	Every time.Duration
}

// WithDefaults returns r with Every's default filled in when it is zero.
func (r Rule) WithDefaults() Rule {
	if r.Every == 0 {
		r.Every = DefaultEvery
	}
	return r
}

// repository returns the rule's repository and, when the rule names one
// image (by tag or digest), that image; otherwise image is empty.
func (r Rule) repository() (repo, image string) {
	name := strings.TrimSpace(r.Name)
	if base, _, ok := strings.Cut(name, "@"); ok {
		return base, name
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[:i], name
	}
	return name, ""
}

// check validates the rule and compiles its tag selection (nil for a
// rule of one image).
func (r Rule) check() (*Selector, error) {
	if strings.TrimSpace(r.Name) == "" {
		return nil, errors.New("sync rule without an image or repository")
	}
	if r.Every != 0 && r.Every < MinEvery {
		return nil, fmt.Errorf("sync %s: every %s is shorter than %s", r.Name, r.Every, MinEvery)
	}
	for _, p := range r.Platforms {
		if parts := strings.Split(p, "/"); len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("sync %s: platform %q is not os/arch[/variant]", r.Name, p)
		}
	}
	if _, image := r.repository(); image != "" {
		if len(r.Tags) > 0 || len(r.Semver) > 0 || r.Newest > 0 {
			return nil, fmt.Errorf("sync %s: tags, semver and newest choose tags of a repository, but it names one image", r.Name)
		}
		return nil, nil
	}
	sel, err := NewSelector(r.Tags, r.Semver, r.Newest)
	if err != nil {
		return nil, fmt.Errorf("sync %s: %w", r.Name, err)
	}
	return sel, nil
}

// Check validates rules: each on its own, and no name twice.
func Check(rules []Rule) error {
	seen := map[string]bool{}
	for _, r := range rules {
		if _, err := r.check(); err != nil {
			return err
		}
		if seen[r.Name] {
			return fmt.Errorf("sync %s is configured twice", r.Name)
		}
		seen[r.Name] = true
	}
	return nil
}
