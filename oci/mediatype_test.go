package oci

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"
)

func TestAccepts(t *testing.T) {
	tests := []struct {
		name   string
		accept []string
		mt     string
		want   bool
	}{
		{"no header", nil, MediaTypeOCIIndex, true},
		{"exact", []string{MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{"other type", []string{MediaTypeDockerManifest}, MediaTypeOCIIndex, false},
		{"list", []string{MediaTypeDockerManifest + ", " + MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{"second header", []string{MediaTypeDockerManifest, MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{"wildcard", []string{"*/*"}, MediaTypeOCIIndex, true},
		{"major wildcard", []string{"application/*"}, MediaTypeOCIIndex, true},
		{"q=0 refuses", []string{MediaTypeOCIIndex + ";q=0"}, MediaTypeOCIIndex, false},
		{"q=0.5 accepts", []string{MediaTypeOCIIndex + "; q=0.5"}, MediaTypeOCIIndex, true},
		{"case", []string{"Application/VND.OCI.Image.Index.v1+JSON"}, MediaTypeOCIIndex, true},
	}
	for _, tc := range tests {
		if got := Accepts(tc.accept, tc.mt); got != tc.want {
			t.Errorf("%s: Accepts(%q, %q) = %v, want %v", tc.name, tc.accept, tc.mt, got, tc.want)
		}
	}
}

func TestNormalizeAccept(t *testing.T) {
	got := NormalizeAccept([]string{
		MediaTypeOCIIndex + ";q=0.9, " + MediaTypeOCIManifest,
		MediaTypeOCIIndex + ", application/x;q=0",
		"",
	})
	want := []string{MediaTypeOCIIndex, MediaTypeOCIManifest}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NormalizeAccept = %q, want %q", got, want)
	}
}

func TestDetectMediaType(t *testing.T) {
	tests := []struct {
		body, want string
	}{
		{`{"mediaType":"` + MediaTypeDockerManifest + `"}`, MediaTypeDockerManifest},
		{`{"schemaVersion":2,"manifests":[]}`, MediaTypeOCIIndex},
		{`{"schemaVersion":2,"config":{},"layers":[]}`, MediaTypeOCIManifest},
		{`{"schemaVersion":1,"fsLayers":[]}`, MediaTypeDockerSchema1Signed},
		{`{"schemaVersion":2}`, ""},
		{`not json`, ""},
	}
	for _, tc := range tests {
		if got := DetectMediaType([]byte(tc.body)); got != tc.want {
			t.Errorf("DetectMediaType(%s) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestManifestRefs(t *testing.T) {
	index := `{"manifests":[{"mediaType":"` + MediaTypeOCIManifest + `","digest":"sha256:` + hexA + `","size":5,"platform":{"os":"linux","architecture":"arm64"}}]}`
	children, blobs, subject, err := ManifestRefs([]byte(index))
	if err != nil || len(children) != 1 || len(blobs) != 0 || subject != nil || children[0].Platform.Architecture != "arm64" {
		t.Errorf("index: %+v %+v %+v %v", children, blobs, subject, err)
	}
	image := `{"config":{"digest":"sha256:c","size":1},"layers":[{"digest":"sha256:l1"},{"digest":"sha256:l2"}],"subject":{"digest":"sha256:s"}}`
	children, blobs, subject, err = ManifestRefs([]byte(image))
	if err != nil || len(children) != 0 || len(blobs) != 3 || blobs[0].Digest != "sha256:c" || subject == nil || subject.Digest != "sha256:s" {
		t.Errorf("image: %+v %+v %+v %v", children, blobs, subject, err)
	}
	if _, _, _, err := ManifestRefs([]byte("{")); err == nil {
		t.Errorf("invalid JSON accepted")
	}
}

func TestErrorWrite(t *testing.T) {
	tests := []struct {
		name       string
		err        *Error
		method     string
		wantStatus int
		wantBody   bool
	}{
		{"get", Errorf(0, CodeBlobUnknown, "blob %s unknown", "x"), "GET", 404, true},
		{"head has no body", Errorf(0, CodeManifestUnknown, "m"), "HEAD", 404, false},
		{"explicit status", Errorf(502, CodeUnavailable, "down"), "GET", 502, true},
		{"retry after", &Error{Status: 429, Items: []ErrorItem{{Code: CodeTooManyRequests, Message: "slow"}}, RetryAfter: "30"}, "GET", 429, true},
		{"no items", &Error{Status: 500}, "GET", 500, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tc.err.Write(w, httptest.NewRequest(tc.method, "/v2/", nil))
			if w.Code != tc.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tc.wantStatus)
			}
			if w.Header().Get(APIVersionHeader) != APIVersion || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("headers %v", w.Header())
			}
			if tc.err.RetryAfter != "" && w.Header().Get("Retry-After") != tc.err.RetryAfter {
				t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
			}
			if !tc.wantBody {
				if w.Body.Len() != 0 {
					t.Errorf("HEAD got a body")
				}
				return
			}
			var body ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) == 0 || body.Errors[0].Code == "" {
				t.Errorf("body %s is not an OCI error (%v)", w.Body, err)
			}
		})
	}
}

func TestCodeStatus(t *testing.T) {
	for code, want := range map[Code]int{
		CodeBlobUnknown: 404, CodeManifestUnknown: 404, CodeNameUnknown: 404, CodeDigestInvalid: 400,
		CodeNameInvalid: 400, CodeTagInvalid: 400, CodeUnauthorized: 401, CodeDenied: 403,
		CodeUnsupported: 405, CodeTooManyRequests: 429, CodeUnavailable: 503, CodeUnknown: 500,
	} {
		if got := code.Status(); got != want {
			t.Errorf("%s.Status() = %d, want %d", code, got, want)
		}
	}
}

func TestParseErrorBody(t *testing.T) {
	items := ParseErrorBody([]byte(`{"errors":[{"code":"DENIED","message":"no"},{"message":"codeless"}]}`))
	if len(items) != 1 || items[0].Code != CodeDenied {
		t.Errorf("ParseErrorBody = %+v", items)
	}
	if items := ParseErrorBody([]byte("<html>")); items != nil {
		t.Errorf("ParseErrorBody(html) = %+v, want nil", items)
	}
}
