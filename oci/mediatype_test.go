package oci

import (
	"net/http"
	"reflect"
	"testing"
)

func TestIsIndex(t *testing.T) {
	tests := []struct {
		mediaType string
		want      bool
	}{
		{MediaTypeOCIIndex, true}, {MediaTypeDockerManifestList, true},
		{MediaTypeOCIManifest, false}, {MediaTypeDockerManifest, false}, {MediaTypeDockerSchema1Signed, false}, {"", false},
	}
	for _, tc := range tests {
		if got := IsIndex(tc.mediaType); got != tc.want {
			t.Errorf("IsIndex(%q) = %v, want %v", tc.mediaType, got, tc.want)
		}
	}
}

func TestManifestMediaTypes(t *testing.T) {
	want := []string{MediaTypeOCIIndex, MediaTypeDockerManifestList, MediaTypeOCIManifest, MediaTypeDockerManifest}
	if !reflect.DeepEqual(ManifestMediaTypes, want) {
		t.Errorf("ManifestMediaTypes = %q, want %q", ManifestMediaTypes, want)
	}
}

func TestDetectMediaType(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"explicit", `{"mediaType":"` + MediaTypeDockerManifest + `","config":{},"layers":[]}`, MediaTypeDockerManifest},
		{"explicit index", `{"mediaType":"` + MediaTypeDockerManifestList + `","manifests":[]}`, MediaTypeDockerManifestList},
		{"index", `{"schemaVersion":2,"manifests":[]}`, MediaTypeOCIIndex},
		{"image", `{"schemaVersion":2,"config":{},"layers":[]}`, MediaTypeOCIManifest},
		{"config only", `{"schemaVersion":2,"config":{}}`, ""},
		{"null manifests", `{"schemaVersion":2,"manifests":null}`, ""},
		{"schema1 signed", `{"schemaVersion":1,"fsLayers":[],"signatures":[]}`, MediaTypeDockerSchema1Signed},
		{"schema1", `{"schemaVersion":1,"fsLayers":[]}`, MediaTypeDockerSchema1},
		{"nothing", `{"schemaVersion":2}`, ""},
		{"not JSON", `not json`, ""},
		{"array", `[]`, ""},
		{"mediaType not a string", `{"mediaType":2,"manifests":[]}`, ""},
		{"empty", ``, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DetectMediaType([]byte(tc.body)); got != tc.want {
				t.Errorf("DetectMediaType(%s) = %q, want %q", tc.body, got, tc.want)
			}
		})
	}
}

func TestAcceptHeader(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{MediaTypeOCIIndex}, MediaTypeOCIIndex},
		{ManifestMediaTypes, MediaTypeOCIIndex + ", " + MediaTypeDockerManifestList + ", " + MediaTypeOCIManifest + ", " + MediaTypeDockerManifest},
	}
	for _, tc := range tests {
		got := AcceptHeader(tc.in)
		if got != tc.want {
			t.Errorf("AcceptHeader(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if back := NormalizeAccept([]string{got}); len(tc.in) > 0 && !reflect.DeepEqual(back, tc.in) {
			t.Errorf("NormalizeAccept(AcceptHeader(%q)) = %q", tc.in, back)
		}
	}
}

func TestAccepts(t *testing.T) {
	tests := []struct {
		name   string
		accept []string
		mt     string
		want   bool
	}{
		{"no header", nil, MediaTypeOCIIndex, true},
		{"empty values", []string{"", " , "}, MediaTypeOCIIndex, true},
		{"exact", []string{MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{"other type", []string{MediaTypeDockerManifest}, MediaTypeOCIIndex, false},
		{"list", []string{MediaTypeDockerManifest + ", " + MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{"second header", []string{MediaTypeDockerManifest, MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{"wildcard", []string{"*/*"}, MediaTypeOCIIndex, true},
		{"application wildcard", []string{"application/*"}, MediaTypeOCIIndex, true},
		{"text wildcard", []string{"text/*"}, MediaTypeOCIIndex, false},
		{"application/json is not a manifest type", []string{"application/json"}, MediaTypeOCIIndex, false},
		{"q=0 refuses", []string{MediaTypeOCIIndex + ";q=0"}, MediaTypeOCIIndex, false},
		{"q=0.000 refuses", []string{MediaTypeOCIIndex + "; q=0.000"}, MediaTypeOCIIndex, false},
		{"Q=0 refuses", []string{MediaTypeOCIIndex + ";Q=0"}, MediaTypeOCIIndex, false},
		{"q=0.5 accepts", []string{MediaTypeOCIIndex + "; q=0.5"}, MediaTypeOCIIndex, true},
		{"bad q accepts", []string{MediaTypeOCIIndex + "; q=x"}, MediaTypeOCIIndex, true},
		{"exact refusal beats wildcard", []string{MediaTypeOCIIndex + ";q=0, */*"}, MediaTypeOCIIndex, false},
		{"exact beats refused wildcard", []string{"*/*;q=0", MediaTypeOCIIndex}, MediaTypeOCIIndex, true},
		{"type wildcard beats refused any", []string{"*/*;q=0, application/*"}, MediaTypeOCIIndex, true},
		{"refused any alone", []string{"*/*;q=0"}, MediaTypeOCIIndex, false},
		{"case", []string{"Application/VND.OCI.Image.Index.v1+JSON"}, MediaTypeOCIIndex, true},
		{"parameters on the type", []string{MediaTypeOCIIndex}, MediaTypeOCIIndex + "; charset=utf-8", true},
		{"other parameters", []string{MediaTypeOCIIndex + "; charset=utf-8; q=1"}, MediaTypeOCIIndex, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Accepts(tc.accept, tc.mt); got != tc.want {
				t.Errorf("Accepts(%q, %q) = %v, want %v", tc.accept, tc.mt, got, tc.want)
			}
		})
	}
}

func TestNormalizeAccept(t *testing.T) {
	tests := []struct {
		name   string
		accept []string
		want   []string
	}{
		{"none", nil, nil},
		{"empty", []string{""}, nil},
		{"parameters, duplicates and refusals", []string{
			MediaTypeOCIIndex + ";q=0.9, " + MediaTypeOCIManifest,
			MediaTypeOCIIndex + ", application/x;q=0",
			"",
		}, []string{MediaTypeOCIIndex, MediaTypeOCIManifest}},
		{"case folded", []string{"Application/VND.OCI.Image.Manifest.v1+JSON, " + MediaTypeOCIManifest}, []string{MediaTypeOCIManifest}},
		{"wildcard kept", []string{MediaTypeDockerManifest + ", */*;q=0.1"}, []string{MediaTypeDockerManifest, "*/*"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NormalizeAccept(tc.accept); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("NormalizeAccept(%q) = %q, want %q", tc.accept, got, tc.want)
			}
		})
	}
}

func TestManifestRefs(t *testing.T) {
	digestB := "sha256:" + "bb" + hexA[2:]
	digestC := "sha256:" + "cc" + hexA[2:]
	tests := []struct {
		name        string
		body        string
		children    []Descriptor
		blobs       []Descriptor
		subject     *Descriptor
		invalidJSON bool
	}{
		{
			name: "index",
			body: `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[
				{"mediaType":"` + MediaTypeOCIManifest + `","digest":"` + digestA + `","size":5,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
				{"mediaType":"` + MediaTypeOCIManifest + `","digest":"` + digestB + `","size":7,"platform":{"os":"linux","architecture":"amd64"},"annotations":{"k":"v"}}]}`,
			children: []Descriptor{
				{MediaType: MediaTypeOCIManifest, Digest: digestA, Size: 5, Platform: &Platform{Architecture: "arm64", OS: "linux", Variant: "v8"}},
				{MediaType: MediaTypeOCIManifest, Digest: digestB, Size: 7, Platform: &Platform{Architecture: "amd64", OS: "linux"}, Annotations: map[string]string{"k": "v"}},
			},
		},
		{
			name: "image with subject",
			body: `{"schemaVersion":2,"config":{"mediaType":"c","digest":"` + digestA + `","size":1},
				"layers":[{"mediaType":"l","digest":"` + digestB + `","size":2}],
				"subject":{"mediaType":"` + MediaTypeOCIManifest + `","digest":"` + digestC + `","size":3},"artifactType":"x"}`,
			blobs:   []Descriptor{{MediaType: "c", Digest: digestA, Size: 1}, {MediaType: "l", Digest: digestB, Size: 2}},
			subject: &Descriptor{MediaType: MediaTypeOCIManifest, Digest: digestC, Size: 3},
		},
		{
			name:  "docker image without layers",
			body:  `{"schemaVersion":2,"mediaType":"` + MediaTypeDockerManifest + `","config":{"digest":"` + digestA + `","size":1},"layers":[]}`,
			blobs: []Descriptor{{Digest: digestA, Size: 1}},
		},
		{
			name:     "referrers index with artifact types",
			body:     `{"manifests":[{"mediaType":"` + MediaTypeOCIManifest + `","digest":"` + digestA + `","size":9,"artifactType":"application/spdx+json"}]}`,
			children: []Descriptor{{MediaType: MediaTypeOCIManifest, Digest: digestA, Size: 9, ArtifactType: "application/spdx+json"}},
		},
		{name: "empty object", body: `{}`},
		{name: "truncated", body: `{"manifests":[`, invalidJSON: true},
		{name: "not JSON", body: `<html>`, invalidJSON: true},
		{name: "array", body: `[]`, invalidJSON: true},
		{name: "null", body: ` null `, invalidJSON: true},
		{name: "empty", body: ``, invalidJSON: true},
		{name: "wrong field type", body: `{"layers":"x"}`, invalidJSON: true},
		{name: "size not a number", body: `{"manifests":[{"digest":"` + digestA + `","size":"1"}]}`, invalidJSON: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			children, blobs, subject, err := ManifestRefs([]byte(tc.body))
			if tc.invalidJSON {
				checkError(t, "ManifestRefs", err, CodeManifestInvalid, http.StatusBadRequest)
				if children != nil || blobs != nil || subject != nil {
					t.Errorf("ManifestRefs returned %v %v %v with its error", children, blobs, subject)
				}
				return
			}
			if err != nil {
				t.Fatalf("ManifestRefs: %v", err)
			}
			if !reflect.DeepEqual(children, tc.children) {
				t.Errorf("children = %+v, want %+v", children, tc.children)
			}
			if !reflect.DeepEqual(blobs, tc.blobs) {
				t.Errorf("blobs = %+v, want %+v", blobs, tc.blobs)
			}
			if !reflect.DeepEqual(subject, tc.subject) {
				t.Errorf("subject = %+v, want %+v", subject, tc.subject)
			}
		})
	}
}
