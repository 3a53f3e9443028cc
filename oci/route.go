package oci

import (
	"net/http"
	"strings"
)

// Kind is what a /v2/ request path addresses.
type Kind int

// The kinds of registry API paths.
const (
	KindBase      Kind = iota + 1 // /v2/
	KindCatalog                   // /v2/_catalog
	KindManifest                  // /v2/<name>/manifests/<reference>
	KindBlob                      // /v2/<name>/blobs/<digest>
	KindUpload                    // /v2/<name>/blobs/uploads/[<id>]
	KindTags                      // /v2/<name>/tags/list
	KindReferrers                 // /v2/<name>/referrers/<digest>
)

// String returns the kind's name as used in logs and metrics.
func (k Kind) String() string {
	switch k {
	case KindBase:
		return "base"
	case KindCatalog:
		return "catalog"
	case KindManifest:
		return "manifest"
	case KindBlob:
		return "blob"
	case KindUpload:
		return "upload"
	case KindTags:
		return "tags"
	case KindReferrers:
		return "referrers"
	}
	return "unknown"
}

// Route is a parsed /v2/ request path.
type Route struct {
	// Kind is the endpoint addressed.
	Kind Kind
	// Name is the repository as the client wrote it; it may begin with a
	// registry host ("ghcr.io/owner/app").
	Name string
	// Reference is the tag or digest of a manifest, the digest of a blob or
	// of a referrers request; empty otherwise.
	Reference string
}

// IsDigest reports whether Reference is a digest rather than a tag.
func (r Route) IsDigest() bool { return strings.Contains(r.Reference, ":") }

// MaxPathLength bounds a request path.
const MaxPathLength = 4096

// errNoEndpoint is the answer for a path that is no registry endpoint.
func errNoEndpoint() *Error {
	return Errorf(http.StatusNotFound, CodeUnsupported, "no such registry API endpoint")
}

// ParseRoute parses the escaped path of a request (r.URL.EscapedPath())
// into a Route, validating the name, tag and digest by the spec's grammar.
// Percent-encoding, control characters, empty, "." and ".." components are
// refused: no name, tag or digest needs them.
func ParseRoute(escapedPath string) (Route, error) {
	p := escapedPath
	if p == "/v2" || p == "/v2/" {
		return Route{Kind: KindBase}, nil
	}
	if !strings.HasPrefix(p, "/v2/") {
		return Route{}, errNoEndpoint()
	}
	if len(p) > MaxPathLength {
		return Route{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "request path is longer than %d bytes", MaxPathLength)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= 0x20 || c >= 0x7f || c == '%' || c == '\\' {
			return Route{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "request path contains a character no name, tag or digest may have")
		}
	}
	rest := p[len("/v2/"):]
	if rest == "_catalog" {
		return Route{Kind: KindCatalog}, nil
	}
	for comp := range strings.SplitSeq(rest, "/") {
		if comp == "." || comp == ".." {
			return Route{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "request path contains a %q component", comp)
		}
	}
	if strings.Contains(rest, "//") || strings.HasPrefix(rest, "/") {
		return Route{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "request path contains an empty component")
	}

	// Uploads: /v2/<name>/blobs/uploads/ or /v2/<name>/blobs/uploads/<id>.
	if i := strings.LastIndex(rest, "/blobs/uploads"); i > 0 {
		tail := rest[i+len("/blobs/uploads"):]
		if tail == "" || tail == "/" || (strings.HasPrefix(tail, "/") && !strings.Contains(tail[1:], "/")) {
			return Route{Kind: KindUpload, Name: rest[:i]}, validateClientName(rest[:i])
		}
	}
	if strings.HasSuffix(rest, "/") {
		return Route{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "request path ends with '/'")
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok && name != "" {
		if err := validateClientName(name); err != nil {
			return Route{}, err
		}
		return Route{Kind: KindTags, Name: name}, nil
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return Route{}, errNoEndpoint()
	}
	ref := rest[i+1:]
	j := strings.LastIndexByte(rest[:i], '/')
	if j <= 0 {
		return Route{}, errNoEndpoint()
	}
	name, endpoint := rest[:j], rest[j+1:i]
	var kind Kind
	switch endpoint {
	case "manifests":
		kind = KindManifest
	case "blobs":
		kind = KindBlob
	case "referrers":
		kind = KindReferrers
	default:
		return Route{}, errNoEndpoint()
	}
	if err := validateClientName(name); err != nil {
		return Route{}, err
	}
	if kind == KindManifest && !strings.Contains(ref, ":") {
		if err := ValidateTag(ref); err != nil {
			return Route{}, err
		}
	} else if _, err := ParseDigest(ref); err != nil {
		return Route{}, err
	}
	return Route{Kind: kind, Name: name, Reference: ref}, nil
}
