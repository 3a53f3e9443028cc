package schedule

import (
	"cmp"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// Selector chooses the tags of a repository that a rule keeps.
//
// Tags that read as versions (3.19, v1.25.2, 20240101) and tags that do
// not (latest, edge) are treated differently:
//   - patterns, when given, choose tags by name: a glob (3.*, *-alpine)
//     or, after a ~, a regular expression that must match the whole tag;
//   - semver constraints, when given, must all hold for a version tag;
//   - newest keeps only the N highest versions.
//
// Constraints and newest concern version tags only: a tag that is not a
// version is kept when a pattern names it, and never without patterns.
// With neither patterns, constraints nor newest, every tag is kept.
type Selector struct {
	patterns    []pattern
	constraints []*semver.Constraints
	newest      int
}

// pattern is one tag pattern: a glob, or a regular expression.
type pattern struct {
	glob string
	re   *regexp.Regexp
}

// match reports whether tag matches the pattern.
func (p pattern) match(tag string) bool {
	if p.re != nil {
		return p.re.MatchString(tag)
	}
	ok, _ := path.Match(p.glob, tag)
	return ok
}

// NewSelector compiles a rule's tags (globs, or ~REGEX), semver
// constraints (">=1.25", "<2", "~1.2", "^3") and newest (0: no limit).
func NewSelector(tags, constraints []string, newest int) (*Selector, error) {
	s := &Selector{newest: newest}
	if newest < 0 {
		return nil, fmt.Errorf("newest must not be negative, got %d", newest)
	}
	for _, t := range tags {
		if expr, ok := strings.CutPrefix(t, "~"); ok {
			re, err := regexp.Compile(`^(?:` + expr + `)$`)
			if err != nil {
				return nil, fmt.Errorf("tag pattern %q: %w", t, err)
			}
			s.patterns = append(s.patterns, pattern{re: re})
			continue
		}
		if t == "" {
			return nil, fmt.Errorf("tag pattern is empty")
		}
		if _, err := path.Match(t, ""); err != nil {
			return nil, fmt.Errorf("tag pattern %q: %w", t, err)
		}
		s.patterns = append(s.patterns, pattern{glob: t})
	}
	for _, c := range constraints {
		sc, err := semver.NewConstraint(c)
		if err != nil {
			return nil, fmt.Errorf("semver constraint %q: %w", c, err)
		}
		s.constraints = append(s.constraints, sc)
	}
	return s, nil
}

// versioned is a tag that reads as a version.
type versioned struct {
	tag string
	v   *semver.Version
}

// Select returns the tags to keep, versions first (highest first), then
// the others in the order given. Duplicates are dropped.
func (s *Selector) Select(tags []string) []string {
	all := len(s.patterns) == 0 && len(s.constraints) == 0 && s.newest == 0
	var versions []versioned
	var others []string
	seen := map[string]bool{}
	for _, tag := range tags {
		if seen[tag] {
			continue
		}
		seen[tag] = true
		if len(s.patterns) > 0 && !slices.ContainsFunc(s.patterns, func(p pattern) bool { return p.match(tag) }) {
			continue
		}
		v, err := semver.NewVersion(tag)
		if err != nil {
			if all || len(s.patterns) > 0 {
				others = append(others, tag)
			}
			continue
		}
		if !slices.ContainsFunc(s.constraints, func(c *semver.Constraints) bool { return !c.Check(v) }) {
			versions = append(versions, versioned{tag, v})
		}
	}
	slices.SortFunc(versions, func(a, b versioned) int {
		return cmp.Or(b.v.Compare(a.v), strings.Compare(a.tag, b.tag))
	})
	if s.newest > 0 && len(versions) > s.newest {
		versions = versions[:s.newest]
	}
	out := make([]string, 0, len(versions)+len(others))
	for _, v := range versions {
		out = append(out, v.tag)
	}
	return append(out, others...)
}
