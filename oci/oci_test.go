package oci

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// Test fixtures shared by the tests of this package.
var (
	hexA      = strings.Repeat("a", 64)
	digestA   = "sha256:" + hexA
	digest512 = "sha512:" + strings.Repeat("0123456789abcdef", 8)
)

// The grammar of the distribution spec written as regular expressions: an
// independent statement of what the hand-written byte loops must accept.
var (
	componentRE  = `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`
	hostRE       = `[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?`
	specNameRE   = regexp.MustCompile(`^` + componentRE + `(?:/` + componentRE + `)*$`)
	clientNameRE = regexp.MustCompile(`^(?:` + hostRE + `/)?` + componentRE + `(?:/` + componentRE + `)*$`)
	tagRE        = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRE     = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
)

// grammarName reports whether name is a valid repository name by the regular
// expressions above: a spec name, optionally led by a registry host.
func grammarName(name string, hostAllowed bool) bool {
	if name == "" || len(name) > MaxNameLength || strings.Contains(name, "..") {
		return false
	}
	if hostAllowed {
		return clientNameRE.MatchString(name)
	}
	return specNameRE.MatchString(name)
}

// checkError fails the test unless err is an *Error with code and status.
func checkError(t *testing.T, what string, err error, code Code, status int) {
	t.Helper()
	var oe *Error
	if !errors.As(err, &oe) {
		t.Errorf("%s: error %v (%T), want *Error %s", what, err, err, code)
		return
	}
	if oe.Code() != code || oe.Status != status {
		t.Errorf("%s: error %s status %d (%v), want %s status %d", what, oe.Code(), oe.Status, oe, code, status)
	}
	if oe.Items[0].Message == "" {
		t.Errorf("%s: error %s has no message", what, oe.Code())
	}
}
