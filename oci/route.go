package oci

import (
	"net/http"
	"strconv"
	"strings"
)

// Kind is what a /v2/ request path addresses.
type Kind int

// The kinds of registry API paths.
const (
	KindBase      Kind = iota + 1 // /v2/ (and /v2)
	KindCatalog                   // /v2/_catalog
	KindManifest                  // /v2/<name>/manifests/<reference>
	KindBlob                      // /v2/<name>/blobs/<digest>
	KindUpload                    // /v2/<name>/blobs/uploads/ and /v2/<name>/blobs/uploads/<id>
	KindTags                      // /v2/<name>/tags/list
	KindReferrers                 // /v2/<name>/referrers/<digest>
)

// String returns the kind's name as used in logs and metrics: "base",
// "catalog", "manifest", "blob", "upload", "tags" or "referrers".
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
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Route is a parsed /v2/ request path.
type Route struct {
	// Kind is the endpoint addressed.
	Kind Kind
	// Name is the repository as the client wrote it; it may begin with a
	// registry host ("ghcr.io/owner/app", "localhost:5000/x"). Empty for
	// KindBase and KindCatalog.
	Name string
	// Reference is the tag or digest of a manifest, the digest of a blob or
	// of a referrers request; empty otherwise (upload session ids are not
	// kept: regcache refuses uploads).
	Reference string
}

// IsDigest reports whether Reference is a digest rather than a tag.
func (r Route) IsDigest() bool { return strings.IndexByte(r.Reference, ':') >= 0 }

// MaxPathLength bounds a request path, in bytes.
const MaxPathLength = 4096

// Path markers, each with the '/' that ends the repository name.
const (
	uploadsMarker = "/blobs/uploads"
	tagsMarker    = "/tags/list"
)

// errNoEndpoint is the answer for a path that is no registry endpoint.
func errNoEndpoint() *Error {
	return Errorf(http.StatusNotFound, CodeUnsupported, "no such registry API endpoint")
}

// ParseRoute parses the escaped path of a request (r.URL.EscapedPath())
// into a Route, validating the name, tag and digest by the spec's grammar.
//
// Percent-encoding, control characters, spaces, non-ASCII bytes, '\',
// empty, "." and ".." components and a trailing '/' (except in "/v2/" and
// ".../blobs/uploads/") are refused, since no name, tag or digest has them.
// The endpoint is decided by the last path marker, so a repository may have
// a component named "manifests" or "blobs": "/v2/a/blobs/manifests/latest"
// is the manifest "latest" of repository "a/blobs".
//
// Errors are *Error: 404 CodeUnsupported for a path that is no registry
// endpoint, 400 CodeNameInvalid, CodeTagInvalid or CodeDigestInvalid for a
// malformed one.
func ParseRoute(escapedPath string) (Route, error) {
	if escapedPath == "/v2" || escapedPath == "/v2/" {
		return Route{Kind: KindBase}, nil
	}
	rest, ok := strings.CutPrefix(escapedPath, "/v2/")
	if !ok {
		return Route{}, errNoEndpoint()
	}
	if len(escapedPath) > MaxPathLength {
		return Route{}, Errorf(http.StatusBadRequest, CodeNameInvalid,
			"request path is %d bytes, longer than %d", len(escapedPath), MaxPathLength)
	}
	if err := checkPath(rest); err != nil {
		return Route{}, err
	}
	if rest == "_catalog" {
		return Route{Kind: KindCatalog}, nil
	}

	// Uploads: <name>/blobs/uploads, <name>/blobs/uploads/ or
	// <name>/blobs/uploads/<id>. The upload id is not part of the Route.
	if i := strings.LastIndex(rest, uploadsMarker); i > 0 {
		tail := rest[i+len(uploadsMarker):]
		if tail == "" || (tail[0] == '/' && strings.IndexByte(tail[1:], '/') < 0) {
			name := rest[:i]
			if err := validateClientName(name); err != nil {
				return Route{}, err
			}
			return Route{Kind: KindUpload, Name: name}, nil
		}
	}
	if strings.HasSuffix(rest, "/") {
		return Route{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "request path ends with '/'")
	}
	if name, ok := strings.CutSuffix(rest, tagsMarker); ok {
		if err := validateClientName(name); err != nil {
			return Route{}, err
		}
		return Route{Kind: KindTags, Name: name}, nil
	}

	// <name>/<endpoint>/<reference>: the last two components.
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return Route{}, errNoEndpoint()
	}
	j := strings.LastIndexByte(rest[:i], '/')
	if j < 0 {
		return Route{}, errNoEndpoint()
	}
	name, endpoint, ref := rest[:j], rest[j+1:i], rest[i+1:]
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
	if kind == KindManifest && strings.IndexByte(ref, ':') < 0 {
		if err := ValidateTag(ref); err != nil {
			return Route{}, err
		}
	} else if _, err := ParseDigest(ref); err != nil {
		return Route{}, err
	}
	return Route{Kind: kind, Name: name, Reference: ref}, nil
}

// checkPath refuses the bytes and components no registry path has in the
// part of a path after "/v2/". A trailing '/' is left to the caller, which
// allows it for uploads only.
func checkPath(rest string) error {
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '\\' {
			return Errorf(http.StatusBadRequest, CodeNameInvalid,
				"request path has %q at byte %d: no name, tag or digest contains it", string(c), len("/v2/")+i)
		}
	}
	for comp := range strings.SplitSeq(rest, "/") {
		if comp == "." || comp == ".." {
			return Errorf(http.StatusBadRequest, CodeNameInvalid, "request path has a %q component", comp)
		}
	}
	if strings.HasPrefix(rest, "/") || strings.Contains(rest, "//") {
		return Errorf(http.StatusBadRequest, CodeNameInvalid, "request path has an empty component")
	}
	return nil
}
