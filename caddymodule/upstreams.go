package caddymodule

import (
	"strings"

	"github.com/regcache/regcache/mirror"
)

// Upstream is one registry the mirror serves.
type Upstream struct {
	// Name is the registry's name as clients know it: "docker.io",
	// "ghcr.io", "registry.example.com:5000". Required.
	Name string `json:"name"`

	// URLs are the endpoints that serve this registry's API, tried in
	// order: a dead endpoint is skipped for a while. Default: the
	// registry's well-known endpoint (https://registry-1.docker.io for
	// docker.io), or https://<name> for any other registry. http:// is
	// allowed for private registries and tests.
	URLs []string `json:"urls,omitempty"`

	// Username for the upstream (its token realm, or Basic auth). Accepts
	// placeholders such as {env.HUB_USER}. Default: anonymous.
	Username string `json:"username,omitempty"`

	// Password or access token for the upstream. Accepts placeholders such
	// as {env.HUB_TOKEN}; never logged. Default: none.
	Password string `json:"password,omitempty"`

	// Allow, Deny and Verify are policy rules as at the top level, with
	// patterns relative to this registry ("library/*"). Allow governs this
	// registry only: when given, a repository of it must match one of its
	// patterns or a top-level allow; other registries are not affected.
	// Default: none.
	Allow  []string `json:"allow,omitempty"`
	Deny   []string `json:"deny,omitempty"`
	Verify []Verify `json:"verify,omitempty"`

	// TrustedRealms are further host names that may receive the
	// credentials as the registry's token realm. Without them, credentials
	// go only to a realm on the endpoint's own host or its registrable
	// domain (auth.docker.io for registry-1.docker.io); a realm anywhere
	// else gets an anonymous token request. Default: none.
	TrustedRealms []string `json:"trusted_realms,omitempty"`
}

// upstreamURLs returns an upstream's endpoints, defaulting to the
// registry's well-known endpoint.
func upstreamURLs(u Upstream) []string {
	if len(u.URLs) > 0 {
		return u.URLs
	}
	if known, ok := mirror.KnownEndpoint(u.Name); ok {
		return []string{known}
	}
	return []string{"https://" + mirror.CanonicalRegistry(u.Name)}
}

// knownEndpointsOnly reports whether every endpoint of the upstream name
// is the well-known public endpoint of that registry, whose network the
// dial guard need not learn by resolving its name.
func knownEndpointsOnly(name string, endpoints []string) bool {
	known, ok := mirror.KnownEndpoint(name)
	if !ok {
		return false
	}
	for _, e := range endpoints {
		if strings.TrimSuffix(e, "/") != known {
			return false
		}
	}
	return true
}
