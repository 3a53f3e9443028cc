package upstream

import "strings"

// Challenge is one parsed WWW-Authenticate challenge.
type Challenge struct {
	// Scheme is the auth scheme, lower-cased: "bearer", "basic".
	Scheme string
	// Params are the auth-params, names lower-cased: realm, service, scope,
	// error.
	Params map[string]string
}

// ParseChallenges parses a WWW-Authenticate header value (RFC 7235): one or
// more challenges, each a scheme followed by comma-separated auth-params
// whose values are tokens or quoted strings with backslash escapes. A
// token68 after the scheme is tolerated and ignored. Malformed input yields
// the challenges that could be read.
func ParseChallenges(header string) []Challenge {
	var out []Challenge
	s := header
	for {
		s = skipSpaceComma(s)
		scheme, rest := readToken(s)
		if scheme == "" {
			return out // end of header, or something that is not a scheme
		}
		ch := Challenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
		s = rest
		for first := true; ; first = false {
			s = strings.TrimLeft(s, " \t")
			start := s
			name, afterName := readToken(s)
			after := strings.TrimLeft(afterName, " \t")
			isParam := name != "" && strings.HasPrefix(after, "=") && !strings.HasPrefix(after, "==")
			if !isParam {
				if first && name != "" && (after == "" || after[0] == ',' || after[0] == '=') {
					// token68 (as in "Basic dXNlcjpwYXNz"): skip it
					s = strings.TrimLeft(after, "=")
					s = strings.TrimLeft(s, " \t")
					if strings.HasPrefix(s, ",") {
						s = s[1:]
						continue
					}
					break
				}
				s = start // the next challenge starts here
				break
			}
			value, rest, ok := readValue(strings.TrimLeft(after[1:], " \t"))
			if !ok {
				s = ""
				break
			}
			ch.Params[strings.ToLower(name)] = value
			s = strings.TrimLeft(rest, " \t")
			if !strings.HasPrefix(s, ",") {
				break
			}
			s = skipSpaceComma(s) // empty list elements are allowed
		}
		out = append(out, ch)
		if s == "" {
			return out
		}
		if next, _ := readToken(skipSpaceComma(s)); next == "" {
			return out
		}
	}
}

// skipSpaceComma drops leading spaces, tabs and commas.
func skipSpaceComma(s string) string { return strings.TrimLeft(s, " \t,") }

// isTokenChar reports whether c is an RFC 7230 tchar.
func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/", c) >= 0
}

// readToken reads a token (with '/' allowed, for token68 tolerance).
func readToken(s string) (token, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// readValue reads a token or a quoted string.
func readValue(s string) (value, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		v, r := readToken(s)
		return v, r, true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false // unterminated quoted string
}
