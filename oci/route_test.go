package oci

import (
	"errors"
	"strings"
	"testing"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestParseRoute(t *testing.T) {
	dgst := "sha256:" + hexA
	tests := []struct {
		path string
		want Route
		code Code // expected error code; "" for success
	}{
		{"/v2/", Route{Kind: KindBase}, ""},
		{"/v2", Route{Kind: KindBase}, ""},
		{"/v2/_catalog", Route{Kind: KindCatalog}, ""},
		{"/v2/library/nginx/manifests/latest", Route{KindManifest, "library/nginx", "latest"}, ""},
		{"/v2/nginx/manifests/" + dgst, Route{KindManifest, "nginx", dgst}, ""},
		{"/v2/a/blobs/manifests/latest", Route{KindManifest, "a/blobs", "latest"}, ""},
		{"/v2/a/manifests/blobs/" + dgst, Route{KindBlob, "a/manifests", dgst}, ""},
		{"/v2/ghcr.io/owner/app/manifests/1.0", Route{KindManifest, "ghcr.io/owner/app", "1.0"}, ""},
		{"/v2/localhost:5000/x/blobs/" + dgst, Route{KindBlob, "localhost:5000/x", dgst}, ""},
		{"/v2/library/nginx/referrers/" + dgst, Route{KindReferrers, "library/nginx", dgst}, ""},
		{"/v2/org/app/tags/list", Route{KindTags, "org/app", ""}, ""},
		{"/v2/x/blobs/uploads/", Route{KindUpload, "x", ""}, ""},
		{"/v2/x/blobs/uploads/abc-123", Route{KindUpload, "x", ""}, ""},
		{"/v2/a__b/c--d/e.f_g/manifests/V1.2_x-y", Route{KindManifest, "a__b/c--d/e.f_g", "V1.2_x-y"}, ""},

		{"/v3/x/manifests/latest", Route{}, CodeUnsupported},
		{"/v2/foo", Route{}, CodeUnsupported},
		{"/v2/foo/bar", Route{}, CodeUnsupported},
		{"/v2/foo/things/latest", Route{}, CodeUnsupported},
		{"/v2/manifests/latest", Route{}, CodeUnsupported},
		{"/v2/a/../b/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a/./b/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a/%2e%2e/b/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a%2fb/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a//b/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2//a/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a/manifests/latest/", Route{}, CodeNameInvalid},
		{"/v2/Library/nginx/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/GHCR.IO/x/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a-/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a___b/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a\\b/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/a b/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/" + strings.Repeat("a", 256) + "/manifests/latest", Route{}, CodeNameInvalid},
		{"/v2/x/manifests/lat\r\nest", Route{}, CodeNameInvalid},
		{"/v2/x/manifests/-latest", Route{}, CodeTagInvalid},
		{"/v2/x/manifests/.latest", Route{}, CodeTagInvalid},
		{"/v2/x/manifests/" + strings.Repeat("t", 129), Route{}, CodeTagInvalid},
		{"/v2/x/blobs/latest", Route{}, CodeDigestInvalid},
		{"/v2/x/blobs/sha256:" + hexA[:63], Route{}, CodeDigestInvalid},
		{"/v2/x/blobs/sha256:" + strings.ToUpper(hexA), Route{}, CodeDigestInvalid},
		{"/v2/x/blobs/md5:" + hexA[:32], Route{}, CodeDigestInvalid},
		{"/v2/x/manifests/sha256:", Route{}, CodeDigestInvalid},
		{"/v2/x/referrers/latest", Route{}, CodeDigestInvalid},
		{"/v2/bad_host:99999999/x/manifests/1", Route{}, CodeNameInvalid},
		{"/v2/" + strings.Repeat("a/", 2100) + "manifests/x", Route{}, CodeNameInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.path[:min(len(tc.path), 60)], func(t *testing.T) {
			got, err := ParseRoute(tc.path)
			if tc.code != "" {
				var oe *Error
				if !errors.As(err, &oe) || oe.Code() != tc.code {
					t.Fatalf("ParseRoute(%q) = %+v, %v; want error code %s", tc.path, got, err, tc.code)
				}
				if oe.Status < 400 || oe.Status >= 500 {
					t.Errorf("ParseRoute(%q) status %d, want 4xx", tc.path, oe.Status)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseRoute(%q) = %+v, %v; want %+v", tc.path, got, err, tc.want)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"library/alpine", true},
		{"a", true},
		{"a.b/c_d/e__f/g-h/i--j", true},
		{"0/9", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a", 256), false},
		{"", false},
		{"A", false},
		{"a/", false},
		{"/a", false},
		{"a//b", false},
		{"a..b", false},
		{"a._b", false},
		{"-a", false},
		{"a-", false},
		{"a___b", false},
		{"ghcr.io/owner", true}, // a dotted component is a valid name component
		{"localhost:5000/x", false},
	}
	for _, tc := range tests {
		if err := ValidateName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestValidateTag(t *testing.T) {
	tests := []struct {
		tag string
		ok  bool
	}{
		{"latest", true}, {"V1.2.3-rc_1", true}, {"_x", true}, {strings.Repeat("t", 128), true},
		{"", false}, {".x", false}, {"-x", false}, {strings.Repeat("t", 129), false}, {"a:b", false}, {"a/b", false}, {"a b", false},
	}
	for _, tc := range tests {
		if err := ValidateTag(tc.tag); (err == nil) != tc.ok {
			t.Errorf("ValidateTag(%q) = %v, want ok=%v", tc.tag, err, tc.ok)
		}
	}
}

func TestSplitHost(t *testing.T) {
	tests := []struct {
		name, host, rest string
		ok               bool
	}{
		{"ghcr.io/owner/app", "ghcr.io", "owner/app", true},
		{"localhost/x", "localhost", "x", true},
		{"localhost:5000/x", "localhost:5000", "x", true},
		{"registry:5000/x", "registry:5000", "x", true},
		{"library/alpine", "", "library/alpine", false},
		{"ghcr.io", "", "ghcr.io", false},
		{"alpine", "", "alpine", false},
	}
	for _, tc := range tests {
		host, rest, ok := SplitHost(tc.name)
		if host != tc.host || rest != tc.rest || ok != tc.ok {
			t.Errorf("SplitHost(%q) = %q, %q, %v; want %q, %q, %v", tc.name, host, rest, ok, tc.host, tc.rest, tc.ok)
		}
	}
}

func TestParseDigest(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"sha256:" + hexA, true},
		{"sha512:" + hexA + hexA, true},
		{"sha256:" + hexA[:63], false},
		{"sha256:" + hexA + "a", false},
		{"sha512:" + hexA, false},
		{"sha256:" + strings.Replace(hexA, "a", "g", 1), false},
		{"sha256:" + strings.ToUpper(hexA), false},
		{"md5:" + hexA[:32], false},
		{"SHA256:" + hexA, false},
		{"sha256", false},
		{":" + hexA, false},
		{"", false},
	}
	for _, tc := range tests {
		d, err := ParseDigest(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseDigest(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err == nil && (d.String() != tc.in || d.Validate() != nil) {
			t.Errorf("ParseDigest(%q) = %q (validate: %v)", tc.in, d, d.Validate())
		}
	}
}

func FuzzParseRoute(f *testing.F) {
	for _, seed := range []string{
		"/v2/", "/v2/library/nginx/manifests/latest", "/v2/ghcr.io/o/a/blobs/sha256:" + hexA,
		"/v2/a/../b/manifests/x", "/v2/a%2fb/tags/list", "/v2/x/blobs/uploads/", "/v2/a/blobs/manifests/x",
		"/v2/x/referrers/sha256:" + hexA, "/v2/localhost:5000/x/manifests/1",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := ParseRoute(path)
		if err != nil {
			var oe *Error
			if !errors.As(err, &oe) || oe.Status < 400 || oe.Status >= 500 {
				t.Fatalf("ParseRoute(%q) error %v is not a 4xx *Error", path, err)
			}
			return
		}
		if strings.Contains(r.Name, "..") || strings.ContainsAny(r.Name+r.Reference, "%\\\r\n\x00 ") {
			t.Fatalf("ParseRoute(%q) accepted %+v", path, r)
		}
		if r.Name != "" {
			if err := validateClientName(r.Name); err != nil {
				t.Fatalf("ParseRoute(%q) accepted name %q: %v", path, r.Name, err)
			}
		}
	})
}

func BenchmarkParseRoute(b *testing.B) {
	b.ReportAllocs()
	path := "/v2/library/nginx/blobs/sha256:" + hexA
	for b.Loop() {
		if _, err := ParseRoute(path); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateName("organisation/team/some-application_name"); err != nil {
			b.Fatal(err)
		}
	}
}
