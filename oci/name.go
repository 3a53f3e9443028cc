package oci

import (
	"net/http"
	"strings"
)

// MaxNameLength is the longest repository name accepted, as in the
// distribution registry.
const MaxNameLength = 255

// ValidateName checks a repository name against the spec's grammar:
// components of [a-z0-9]+ joined by '.', '_', '__' or '-'+, separated by
// '/', at most MaxNameLength characters. A registry host is not allowed.
func ValidateName(name string) error {
	if name == "" {
		return Errorf(http.StatusBadRequest, CodeNameInvalid, "repository name is empty")
	}
	if len(name) > MaxNameLength {
		return Errorf(http.StatusBadRequest, CodeNameInvalid, "repository name is longer than %d characters", MaxNameLength)
	}
	for comp := range strings.SplitSeq(name, "/") {
		if !validComponent(comp) {
			return Errorf(http.StatusBadRequest, CodeNameInvalid,
				"repository name component %q is invalid: use lowercase letters and digits separated by '.', '_', '__' or '-'", truncate(comp))
		}
	}
	return nil
}

// validComponent reports whether s matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func validComponent(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	for {
		// one run of alphanumerics
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
		// one separator
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
		if i == len(s) {
			return false
		}
	}
}

func isLowerAlnum(c byte) bool { return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') }

// validHost reports whether s looks like a registry host:
// [a-z0-9]([a-z0-9.-]*[a-z0-9])? with an optional :port of 1 to 5 digits.
func validHost(s string) bool {
	host, port, hasPort := strings.Cut(s, ":")
	if hasPort {
		if len(port) == 0 || len(port) > 5 {
			return false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return false
			}
		}
	}
	if host == "" || len(host) > 253 {
		return false
	}
	if !isLowerAlnum(host[0]) || !isLowerAlnum(host[len(host)-1]) {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !isLowerAlnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	return !strings.Contains(host, "..")
}

// isHostLike reports whether a first name component names a registry
// host rather than a repository: it has a '.' or a ':' or is localhost.
func isHostLike(comp string) bool {
	return strings.ContainsAny(comp, ".:") || comp == "localhost" || strings.HasPrefix(comp, "localhost:")
}

// SplitHost splits a leading registry host from name when its first
// component looks like one (contains '.' or ':' or is "localhost") and
// more components follow: "ghcr.io/owner/app" is "ghcr.io", "owner/app".
func SplitHost(name string) (host, rest string, ok bool) {
	first, rest, found := strings.Cut(name, "/")
	if !found || rest == "" || !isHostLike(first) {
		return "", name, false
	}
	return first, rest, true
}

// validateClientName checks a repository name as a client may write it in
// a path: a spec name, optionally led by a registry host component.
func validateClientName(name string) error {
	if host, rest, ok := SplitHost(name); ok {
		if !validHost(host) {
			return Errorf(http.StatusBadRequest, CodeNameInvalid, "registry host %q is invalid", truncate(host))
		}
		if len(name) > MaxNameLength {
			return Errorf(http.StatusBadRequest, CodeNameInvalid, "repository name is longer than %d characters", MaxNameLength)
		}
		return ValidateName(rest)
	}
	return ValidateName(name)
}

// MaxTagLength is the longest tag the spec allows.
const MaxTagLength = 128

// ValidateTag checks a tag against [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return Errorf(http.StatusBadRequest, CodeTagInvalid, "tag must be 1 to %d characters", MaxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || c == '_' ||
			(i > 0 && (c == '.' || c == '-'))
		if !ok {
			return Errorf(http.StatusBadRequest, CodeTagInvalid, "tag %q is invalid: use letters, digits, '_', '.' and '-', not starting with '.' or '-'", truncate(tag))
		}
	}
	return nil
}

// truncate shortens client input quoted in an error message.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
