package oci

import (
	"net/http"
	"strings"
)

// MaxNameLength is the longest repository name accepted, registry host
// included, as in the distribution registry.
const MaxNameLength = 255

// MaxTagLength is the longest tag the spec allows.
const MaxTagLength = 128

// ValidateName checks a repository name against the spec's grammar:
// components matching [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* separated by '/',
// 1 to MaxNameLength characters. A registry host component ("localhost:5000")
// is not allowed; split it off with SplitHost first. The error is an *Error
// with CodeNameInvalid.
func ValidateName(name string) error {
	if err := checkNameLength(name); err != nil {
		return err
	}
	return checkComponents(name)
}

// ValidateTag checks a tag against [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. The
// error is an *Error with CodeTagInvalid.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return Errorf(http.StatusBadRequest, CodeTagInvalid, "tag must be 1 to %d characters, got %d", MaxTagLength, len(tag))
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if isAlnum(c) || c == '_' || (i > 0 && (c == '.' || c == '-')) {
			continue
		}
		return Errorf(http.StatusBadRequest, CodeTagInvalid,
			"tag %q is invalid: use letters, digits, '_', '.' and '-', not starting with '.' or '-'", truncate(tag))
	}
	return nil
}

// SplitHost splits a leading registry host from name when the first
// component looks like one (it contains '.' or ':' or is "localhost") and at
// least one more component follows: "ghcr.io/owner/app" gives "ghcr.io",
// "owner/app", true; "library/alpine" gives "", "library/alpine", false. It
// does not validate the host; ParseRoute has done that for route names.
func SplitHost(name string) (host, rest string, ok bool) {
	first, rest, found := strings.Cut(name, "/")
	if !found || rest == "" || !isHostLike(first) {
		return "", name, false
	}
	return first, rest, true
}

// isHostLike reports whether a first name component reads as a registry
// host rather than a repository component.
func isHostLike(comp string) bool {
	return comp == "localhost" || strings.ContainsAny(comp, ".:")
}

// validateClientName checks a repository name as a client writes it in a
// request path: a spec name whose first component, when at least one more
// follows, may instead be a registry host.
func validateClientName(name string) error {
	if err := checkNameLength(name); err != nil {
		return err
	}
	first, rest, more := strings.Cut(name, "/")
	if !more {
		return checkComponents(name)
	}
	if !validHost(first) && !validComponent(first) {
		if isHostLike(first) {
			return Errorf(http.StatusBadRequest, CodeNameInvalid,
				"registry host %q is invalid: use lowercase letters, digits, '.' and '-', and an optional :port", truncate(first))
		}
		return errComponent(first)
	}
	return checkComponents(rest)
}

// checkNameLength enforces 1 to MaxNameLength characters.
func checkNameLength(name string) error {
	if name == "" {
		return Errorf(http.StatusBadRequest, CodeNameInvalid, "repository name is empty")
	}
	if len(name) > MaxNameLength {
		return Errorf(http.StatusBadRequest, CodeNameInvalid,
			"repository name is %d characters, longer than %d", len(name), MaxNameLength)
	}
	return nil
}

// checkComponents checks every '/'-separated component of name.
func checkComponents(name string) error {
	for comp := range strings.SplitSeq(name, "/") {
		if !validComponent(comp) {
			return errComponent(comp)
		}
	}
	return nil
}

// errComponent is the error for a name component outside the grammar.
func errComponent(comp string) *Error {
	if comp == "" {
		return Errorf(http.StatusBadRequest, CodeNameInvalid, "repository name has an empty component")
	}
	return Errorf(http.StatusBadRequest, CodeNameInvalid,
		"repository name component %q is invalid: use lowercase letters and digits separated by '.', '_', '__' or '-'", truncate(comp))
}

// validComponent reports whether s matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*:
// runs of lowercase alphanumerics, each pair joined by exactly one separator.
func validComponent(s string) bool {
	i := 0
	for {
		// A run of at least one lowercase alphanumeric.
		start := i
		for i < len(s) && isLowerAlnum(s[i]) {
			i++
		}
		if i == start {
			return false
		}
		if i == len(s) {
			return true
		}
		// One separator, which must be followed by another run.
		switch s[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(s) && s[i] == '_' {
				i++
			}
		case '-':
			for i < len(s) && s[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// validHost reports whether s is a registry host:
// [a-z0-9]([a-z0-9.-]*[a-z0-9])? with an optional :port of 1 to 5 digits,
// and no empty label (".."), which no DNS name has.
func validHost(s string) bool {
	host, port, hasPort := strings.Cut(s, ":")
	if hasPort {
		if port == "" || len(port) > 5 {
			return false
		}
		for i := 0; i < len(port); i++ {
			if !isDigit(port[i]) {
				return false
			}
		}
	}
	if host == "" || !isLowerAlnum(host[0]) || !isLowerAlnum(host[len(host)-1]) {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if c == '.' && host[i-1] == '.' {
			return false
		}
		if !isLowerAlnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isLowerAlnum(c byte) bool { return ('a' <= c && c <= 'z') || isDigit(c) }
func isAlnum(c byte) bool      { return isLowerAlnum(c) || ('A' <= c && c <= 'Z') }

// truncate shortens client input quoted in an error message.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
