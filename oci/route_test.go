package oci

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		name string
		path string
		want Route
	}{
		{"base", "/v2/", Route{Kind: KindBase}},
		{"base without slash", "/v2", Route{Kind: KindBase}},
		{"catalog", "/v2/_catalog", Route{Kind: KindCatalog}},
		{"manifest by tag", "/v2/library/nginx/manifests/latest", Route{KindManifest, "library/nginx", "latest"}},
		{"manifest by digest", "/v2/nginx/manifests/" + digestA, Route{KindManifest, "nginx", digestA}},
		{"manifest by sha512", "/v2/nginx/manifests/" + digest512, Route{KindManifest, "nginx", digest512}},
		{"repository named blobs", "/v2/a/blobs/manifests/latest", Route{KindManifest, "a/blobs", "latest"}},
		{"repository named manifests", "/v2/a/manifests/blobs/" + digestA, Route{KindBlob, "a/manifests", digestA}},
		{"repository named uploads", "/v2/a/blobs/uploads/manifests/v1", Route{KindManifest, "a/blobs/uploads", "v1"}},
		{"repository named tags/list", "/v2/a/tags/list/manifests/v1", Route{KindManifest, "a/tags/list", "v1"}},
		{"repository named referrers", "/v2/x/referrers/tags/list", Route{KindTags, "x/referrers", ""}},
		{"host prefix", "/v2/ghcr.io/owner/app/manifests/1.0", Route{KindManifest, "ghcr.io/owner/app", "1.0"}},
		{"localhost with port", "/v2/localhost:5000/x/blobs/" + digestA, Route{KindBlob, "localhost:5000/x", digestA}},
		{"localhost", "/v2/localhost/x/tags/list", Route{KindTags, "localhost/x", ""}},
		{"host with dashes", "/v2/my-registry.example.com:443/team/app/manifests/v1", Route{KindManifest, "my-registry.example.com:443/team/app", "v1"}},
		{"dotted first component with underscore", "/v2/a_b.c/x/manifests/v1", Route{KindManifest, "a_b.c/x", "v1"}},
		{"single dotted component", "/v2/ghcr.io/manifests/v1", Route{KindManifest, "ghcr.io", "v1"}},
		{"referrers", "/v2/library/nginx/referrers/" + digestA, Route{KindReferrers, "library/nginx", digestA}},
		{"tags", "/v2/org/app/tags/list", Route{KindTags, "org/app", ""}},
		{"upload start", "/v2/x/blobs/uploads/", Route{KindUpload, "x", ""}},
		{"upload start without slash", "/v2/x/blobs/uploads", Route{KindUpload, "x", ""}},
		{"upload session", "/v2/x/blobs/uploads/abc-123", Route{KindUpload, "x", ""}},
		{"repository named blobs/uploads", "/v2/a/blobs/uploads/b/blobs/uploads/", Route{KindUpload, "a/blobs/uploads/b", ""}},
		{"upload under host", "/v2/ghcr.io/o/a/blobs/uploads/", Route{KindUpload, "ghcr.io/o/a", ""}},
		{"separators", "/v2/a__b/c--d/e.f_g/manifests/V1.2_x-y", Route{KindManifest, "a__b/c--d/e.f_g", "V1.2_x-y"}},
		{"tag of 128", "/v2/x/manifests/" + strings.Repeat("t", 128), Route{KindManifest, "x", strings.Repeat("t", 128)}},
		{"name of 255", "/v2/" + strings.Repeat("a", 255) + "/manifests/x", Route{KindManifest, strings.Repeat("a", 255), "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRoute(tc.path)
			if err != nil || got != tc.want {
				t.Errorf("ParseRoute(%q) = %+v, %v; want %+v", tc.path, got, err, tc.want)
			}
		})
	}
}

func TestParseRouteRejects(t *testing.T) {
	const (
		notFound   = http.StatusNotFound
		badRequest = http.StatusBadRequest
	)
	tests := []struct {
		name   string
		path   string
		code   Code
		status int
	}{
		{"not v2", "/v3/x/manifests/latest", CodeUnsupported, notFound},
		{"v2 prefix only", "/v2x/manifests/latest", CodeUnsupported, notFound},
		{"root", "/", CodeUnsupported, notFound},
		{"empty", "", CodeUnsupported, notFound},
		{"one component", "/v2/foo", CodeUnsupported, notFound},
		{"two components", "/v2/foo/bar", CodeUnsupported, notFound},
		{"unknown endpoint", "/v2/foo/things/latest", CodeUnsupported, notFound},
		{"no name", "/v2/manifests/latest", CodeUnsupported, notFound},
		{"tags without list", "/v2/x/tags/all", CodeUnsupported, notFound},
		{"upload session with slash", "/v2/x/blobs/uploads/a/b", CodeUnsupported, notFound},

		{"dot-dot", "/v2/a/../b/manifests/latest", CodeNameInvalid, badRequest},
		{"dot", "/v2/a/./b/manifests/latest", CodeNameInvalid, badRequest},
		{"dot-dot first", "/v2/../manifests/latest", CodeNameInvalid, badRequest},
		{"dot-dot as tag", "/v2/a/manifests/..", CodeNameInvalid, badRequest},
		{"dot as upload id", "/v2/a/blobs/uploads/.", CodeNameInvalid, badRequest},
		{"dot-dot as upload id", "/v2/a/blobs/uploads/..", CodeNameInvalid, badRequest},
		{"encoded dot-dot", "/v2/a/%2e%2e/b/manifests/latest", CodeNameInvalid, badRequest},
		{"encoded slash", "/v2/a%2fb/manifests/latest", CodeNameInvalid, badRequest},
		{"encoded letter", "/v2/%61/manifests/latest", CodeNameInvalid, badRequest},
		{"double slash", "/v2/a//b/manifests/latest", CodeNameInvalid, badRequest},
		{"leading double slash", "/v2//a/manifests/latest", CodeNameInvalid, badRequest},
		{"double slash before endpoint", "/v2/a//manifests/latest", CodeNameInvalid, badRequest},
		{"trailing slash", "/v2/a/manifests/latest/", CodeNameInvalid, badRequest},
		{"trailing slash on tags", "/v2/a/tags/list/", CodeNameInvalid, badRequest},
		{"trailing slash on catalog", "/v2/_catalog/", CodeNameInvalid, badRequest},
		{"trailing double slash on uploads", "/v2/x/blobs/uploads//", CodeNameInvalid, badRequest},
		{"backslash", "/v2/a\\b/manifests/latest", CodeNameInvalid, badRequest},
		{"space", "/v2/a b/manifests/latest", CodeNameInvalid, badRequest},
		{"NUL", "/v2/a\x00/manifests/latest", CodeNameInvalid, badRequest},
		{"DEL", "/v2/a\x7f/manifests/latest", CodeNameInvalid, badRequest},
		{"non-ASCII", "/v2/caf\xc3\xa9/manifests/latest", CodeNameInvalid, badRequest},
		{"percent in upload id", "/v2/x/blobs/uploads/a%2fb", CodeNameInvalid, badRequest},
		{"space in upload id", "/v2/x/blobs/uploads/a b", CodeNameInvalid, badRequest},
		{"backslash in upload id", "/v2/x/blobs/uploads/a\\b", CodeNameInvalid, badRequest},
		{"LF in upload id", "/v2/x/blobs/uploads/a\nb", CodeNameInvalid, badRequest},
		{"tab in upload id", "/v2/x/blobs/uploads/a\tb", CodeNameInvalid, badRequest},
		{"CR LF in tag", "/v2/x/manifests/lat\r\nest", CodeNameInvalid, badRequest},
		{"LF in digest", "/v2/x/blobs/sha256:" + hexA[:63] + "\n", CodeNameInvalid, badRequest},
		{"uppercase name", "/v2/Library/nginx/manifests/latest", CodeNameInvalid, badRequest},
		{"uppercase host", "/v2/GHCR.IO/x/manifests/latest", CodeNameInvalid, badRequest},
		{"uppercase localhost", "/v2/LOCALHOST:5000/x/manifests/latest", CodeNameInvalid, badRequest},
		{"trailing dash", "/v2/a-/manifests/latest", CodeNameInvalid, badRequest},
		{"leading dash", "/v2/-a/manifests/latest", CodeNameInvalid, badRequest},
		{"triple underscore", "/v2/a___b/manifests/latest", CodeNameInvalid, badRequest},
		{"dot underscore", "/v2/a._b/manifests/latest", CodeNameInvalid, badRequest},
		{"name of 256", "/v2/" + strings.Repeat("a", 256) + "/manifests/latest", CodeNameInvalid, badRequest},
		{"host name of 256", "/v2/ghcr.io/" + strings.Repeat("a", 248) + "/manifests/latest", CodeNameInvalid, badRequest},
		{"port too long", "/v2/host:123456/x/manifests/1", CodeNameInvalid, badRequest},
		{"empty port", "/v2/host:/x/manifests/1", CodeNameInvalid, badRequest},
		{"host with underscore and port", "/v2/bad_host:5000/x/manifests/1", CodeNameInvalid, badRequest},
		{"host with double dot", "/v2/a..b/x/manifests/1", CodeNameInvalid, badRequest},
		{"host ending with dot", "/v2/ghcr.io./x/manifests/1", CodeNameInvalid, badRequest},
		{"port on a single component", "/v2/localhost:5000/manifests/1", CodeNameInvalid, badRequest},
		{"host in second component", "/v2/x/localhost:5000/manifests/1", CodeNameInvalid, badRequest},
		{"invalid upload name", "/v2/X/blobs/uploads/", CodeNameInvalid, badRequest},
		{"invalid tags name", "/v2/a_/tags/list", CodeNameInvalid, badRequest},
		{"path too long", "/v2/x/blobs/uploads/" + strings.Repeat("u", MaxPathLength), CodeNameInvalid, badRequest},

		{"tag starting with dash", "/v2/x/manifests/-latest", CodeTagInvalid, badRequest},
		{"tag starting with dot", "/v2/x/manifests/.latest", CodeTagInvalid, badRequest},
		{"tag of 129", "/v2/x/manifests/" + strings.Repeat("t", 129), CodeTagInvalid, badRequest},
		{"tag with plus", "/v2/x/manifests/1+build", CodeTagInvalid, badRequest},

		{"blob by tag", "/v2/x/blobs/latest", CodeDigestInvalid, badRequest},
		{"digest of 63 hex", "/v2/x/blobs/sha256:" + hexA[:63], CodeDigestInvalid, badRequest},
		{"digest of 65 hex", "/v2/x/blobs/sha256:" + hexA + "a", CodeDigestInvalid, badRequest},
		{"uppercase digest", "/v2/x/blobs/sha256:" + strings.ToUpper(hexA), CodeDigestInvalid, badRequest},
		{"md5 digest", "/v2/x/blobs/md5:" + hexA[:32], CodeDigestInvalid, badRequest},
		{"empty digest hex", "/v2/x/manifests/sha256:", CodeDigestInvalid, badRequest},
		{"empty digest algorithm", "/v2/x/manifests/:" + hexA, CodeDigestInvalid, badRequest},
		{"referrers by tag", "/v2/x/referrers/latest", CodeDigestInvalid, badRequest},
		{"referrers by bad digest", "/v2/x/referrers/sha256:xyz", CodeDigestInvalid, badRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRoute(tc.path)
			if got != (Route{}) {
				t.Errorf("ParseRoute(%q) returned %+v with its error", tc.path, got)
			}
			checkError(t, "ParseRoute("+truncate(tc.path)+")", err, tc.code, tc.status)
		})
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		kind Kind
		want string
	}{
		{KindBase, "base"}, {KindCatalog, "catalog"}, {KindManifest, "manifest"}, {KindBlob, "blob"},
		{KindUpload, "upload"}, {KindTags, "tags"}, {KindReferrers, "referrers"}, {0, "Kind(0)"}, {42, "Kind(42)"},
	}
	for _, tc := range tests {
		if got := tc.kind.String(); got != tc.want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tc.kind), got, tc.want)
		}
	}
}

func TestRouteIsDigest(t *testing.T) {
	tests := []struct {
		ref  string
		want bool
	}{
		{digestA, true}, {"latest", false}, {"", false}, {"v1.0", false},
	}
	for _, tc := range tests {
		if got := (Route{Kind: KindManifest, Name: "x", Reference: tc.ref}).IsDigest(); got != tc.want {
			t.Errorf("Route{Reference: %q}.IsDigest() = %v, want %v", tc.ref, got, tc.want)
		}
	}
}

// rebuild returns the path a successfully parsed route came from, or for
// uploads the path up to the upload marker.
func rebuild(r Route) string {
	switch r.Kind {
	case KindBase:
		return "/v2/"
	case KindCatalog:
		return "/v2/_catalog"
	case KindManifest:
		return "/v2/" + r.Name + "/manifests/" + r.Reference
	case KindBlob:
		return "/v2/" + r.Name + "/blobs/" + r.Reference
	case KindReferrers:
		return "/v2/" + r.Name + "/referrers/" + r.Reference
	case KindTags:
		return "/v2/" + r.Name + "/tags/list"
	case KindUpload:
		return "/v2/" + r.Name + uploadsMarker
	}
	return ""
}

func FuzzParseRoute(f *testing.F) {
	for _, seed := range []string{
		"/v2", "/v2/", "/v2/_catalog", "/v2/library/nginx/manifests/latest", "/v2/x/manifests/" + digestA,
		"/v2/ghcr.io/o/a/blobs/" + digestA, "/v2/localhost:5000/x/blobs/" + digest512,
		"/v2/a/../b/manifests/x", "/v2/a/%2e%2e/b/manifests/x", "/v2/a%2fb/tags/list", "/v2/a//b/tags/list",
		"/v2/x/blobs/uploads/", "/v2/x/blobs/uploads/abc-123", "/v2/a/blobs/manifests/x",
		"/v2/x/referrers/" + digestA, "/v2/X/manifests/1", "/v2/x/manifests/a\r\nb", "/v2/a..b/c/tags/list",
		"/v2/a_b.c/x/manifests/v1", "/v2/x/manifests/sha256:" + hexA[:63], "/v2/x/tags/list/",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := ParseRoute(path)
		if err != nil {
			var status int
			var oe *Error
			if e, ok := err.(*Error); ok {
				oe, status = e, e.Status
			}
			if oe == nil || (status != http.StatusBadRequest && status != http.StatusNotFound) || len(oe.Items) != 1 {
				t.Fatalf("ParseRoute(%q) error %v is not a 400/404 *Error", path, err)
			}
			return
		}
		if strings.Contains(r.Name, "..") || strings.ContainsAny(r.Name, "%\\") {
			t.Fatalf("ParseRoute(%q) accepted name %q", path, r.Name)
		}
		for i := 0; i < len(r.Name+r.Reference); i++ {
			if c := (r.Name + r.Reference)[i]; c < 0x21 || c > 0x7e {
				t.Fatalf("ParseRoute(%q) accepted byte 0x%02x in %+v", path, c, r)
			}
		}
		switch r.Kind {
		case KindBase, KindCatalog:
			if r.Name != "" || r.Reference != "" {
				t.Fatalf("ParseRoute(%q) = %+v: base and catalog have no name", path, r)
			}
		default:
			if !grammarName(r.Name, true) {
				t.Fatalf("ParseRoute(%q) accepted name %q outside the grammar", path, r.Name)
			}
		}
		switch r.Kind {
		case KindBlob, KindReferrers:
			if !digestRE.MatchString(r.Reference) {
				t.Fatalf("ParseRoute(%q) accepted digest %q", path, r.Reference)
			}
		case KindManifest:
			if !digestRE.MatchString(r.Reference) && !tagRE.MatchString(r.Reference) {
				t.Fatalf("ParseRoute(%q) accepted reference %q", path, r.Reference)
			}
		default:
			if r.Reference != "" {
				t.Fatalf("ParseRoute(%q) = %+v: reference on a %s route", path, r, r.Kind)
			}
		}
		want := rebuild(r)
		switch {
		case r.Kind == KindBase:
			if path != "/v2" && path != "/v2/" {
				t.Fatalf("ParseRoute(%q) = base", path)
			}
		case r.Kind == KindUpload:
			if !strings.HasPrefix(path, want) || strings.Count(path[len(want):], "/") > 1 {
				t.Fatalf("ParseRoute(%q) = %+v, not an upload path", path, r)
			}
		case path != want:
			t.Fatalf("ParseRoute(%q) = %+v, which is the path %q", path, r, want)
		}
	})
}

func BenchmarkParseRoute(b *testing.B) {
	paths := []struct{ name, path string }{
		{"blob", "/v2/library/nginx/blobs/" + digestA},
		{"manifest_tag", "/v2/ghcr.io/owner/app/manifests/v1.2.3"},
		{"tags", "/v2/org/team/app/tags/list"},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseRoute(p.path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
