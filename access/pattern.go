package access

import (
	"fmt"
	"path"
	"strings"
)

// Pattern matches repositories, and optionally tags, by the syntax of the
// allow, deny and verify rules: REGISTRY/REPOSITORY[:TAG], where `*`
// matches within one path component (and within a tag), `**` as a whole
// component matches any number of components (zero included), and `?`
// and `[...]` match as in path.Match. A pattern without a tag matches
// every reference of the repositories it names.
type Pattern struct {
	text  string
	parts []string
	// kinds says how each part matches, index for index.
	kinds []partKind
	tag   string // "" when the pattern names no tag
}

// partKind is how a pattern component matches.
type partKind uint8

const (
	partLiteral  partKind = iota // equal strings
	partAny                      // `*`: any one component
	partAnyDepth                 // `**`: any number of components
	partGlob                     // path.Match
)

// ParsePattern parses an absolute pattern such as "docker.io/library/*" or
// "ghcr.io/acme/**:v*". The registry, its first component, must be given;
// a Docker Hub repository of one component gets "library/", as clients'
// names do, whether that component is literal or a wildcard ("docker.io/*"
// names the official images); only "docker.io/**" keeps every depth.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{text: s}
	repo := s
	// The tag separator is a colon after the last slash; a colon before it
	// belongs to the registry's port.
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		repo, p.tag = s[:i], s[i+1:]
		if p.tag == "" {
			return Pattern{}, fmt.Errorf("pattern %q: empty tag after ':'", s)
		}
		if _, err := path.Match(p.tag, ""); err != nil || strings.Contains(p.tag, "/") {
			return Pattern{}, fmt.Errorf("pattern %q: bad tag pattern %q", s, p.tag)
		}
	}
	p.parts = strings.Split(repo, "/")
	if len(p.parts) < 2 {
		return Pattern{}, fmt.Errorf("pattern %q must name a registry and a repository (registry/repository)", s)
	}
	for _, c := range p.parts {
		if c == "" {
			return Pattern{}, fmt.Errorf("pattern %q has an empty path component", s)
		}
		if c == "**" {
			continue
		}
		if strings.Contains(c, "**") {
			return Pattern{}, fmt.Errorf("pattern %q: ** must be a whole path component", s)
		}
		if _, err := path.Match(c, ""); err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: bad component %q: %w", s, c, err)
		}
	}
	p.parts[0] = strings.ToLower(p.parts[0])
	if p.parts[0] == "docker.io" && len(p.parts) == 2 && p.parts[1] != "**" {
		p.parts = []string{"docker.io", "library", p.parts[1]}
	}
	for _, c := range p.parts {
		k := partGlob
		switch {
		case c == "**":
			k = partAnyDepth
		case c == "*":
			k = partAny
		case !hasMeta(c):
			k = partLiteral
		}
		p.kinds = append(p.kinds, k)
	}
	return p, nil
}

// hasMeta reports whether a pattern component has wildcard characters.
func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// String returns the pattern as written.
func (p Pattern) String() string { return p.text }

// HasTag reports whether the pattern names tags.
func (p Pattern) HasTag() bool { return p.tag != "" }

// MatchRepository reports whether name ("registry/repository") matches
// the pattern's repository part.
func (p Pattern) MatchRepository(name string) bool {
	return p.matchComponents(strings.Split(name, "/"))
}

// matchComponents is MatchRepository for a name split at its slashes.
func (p Pattern) matchComponents(name []string) bool {
	return matchParts(p.parts, p.kinds, name)
}

// MatchTag reports whether tag matches the pattern's tag part; a pattern
// without one matches every tag.
func (p Pattern) MatchTag(tag string) bool {
	if p.tag == "" {
		return true
	}
	ok, _ := path.Match(p.tag, tag)
	return ok
}

// matchParts matches path components, `**` standing for any number of
// them.
func matchParts(pat []string, kinds []partKind, name []string) bool {
	for len(pat) > 0 {
		switch kinds[0] {
		case partAnyDepth:
			for i := 0; i <= len(name); i++ {
				if matchParts(pat[1:], kinds[1:], name[i:]) {
					return true
				}
			}
			return false
		case partLiteral:
			if len(name) == 0 || pat[0] != name[0] {
				return false
			}
		case partAny:
			if len(name) == 0 {
				return false
			}
		default:
			if len(name) == 0 {
				return false
			}
			if ok, _ := path.Match(pat[0], name[0]); !ok {
				return false
			}
		}
		pat, kinds, name = pat[1:], kinds[1:], name[1:]
	}
	return len(name) == 0
}
