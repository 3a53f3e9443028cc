package oci

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Manifest media types.
const (
	MediaTypeDockerManifest      = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest         = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex            = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	MediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
)

// ManifestMediaTypes lists the media types regcache asks upstreams for by
// default, most preferred first.
var ManifestMediaTypes = []string{MediaTypeOCIIndex, MediaTypeDockerManifestList, MediaTypeOCIManifest, MediaTypeDockerManifest}

// IsIndex reports whether mediaType is an image index or manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerManifestList
}

// mediaTypeProbe reads just what DetectMediaType needs of a manifest.
type mediaTypeProbe struct {
	MediaType string          `json:"mediaType"`
	Manifests json.RawMessage `json:"manifests"`
	Config    json.RawMessage `json:"config"`
	Layers    json.RawMessage `json:"layers"`
	FSLayers  json.RawMessage `json:"fsLayers"`
}

// DetectMediaType returns the media type of a manifest document: its
// "mediaType" field, else an OCI index when it has "manifests", an OCI
// manifest when it has "config" and "layers", or "" when unknown.
func DetectMediaType(body []byte) string {
	var p mediaTypeProbe
	if err := json.Unmarshal(body, &p); err != nil {
		return ""
	}
	switch {
	case p.MediaType != "":
		return p.MediaType
	case p.Manifests != nil:
		return MediaTypeOCIIndex
	case p.Config != nil && p.Layers != nil:
		return MediaTypeOCIManifest
	case p.FSLayers != nil:
		return MediaTypeDockerSchema1Signed
	}
	return ""
}

// acceptEntry is one media range of an Accept header.
type acceptEntry struct {
	mediaType string
	refused   bool // q=0
}

// parseAccept splits Accept header values into media ranges.
func parseAccept(accept []string) []acceptEntry {
	var out []acceptEntry
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if mt == "" {
				continue
			}
			e := acceptEntry{mediaType: mt}
			for param := range strings.SplitSeq(params, ";") {
				k, val, _ := strings.Cut(param, "=")
				if strings.TrimSpace(k) == "q" {
					if q, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil && q == 0 {
						e.refused = true
					}
				}
			}
			out = append(out, e)
		}
	}
	return out
}

// Accepts reports whether Accept header values allow mediaType. No Accept
// at all allows everything; "*/*" and "application/*" match; q=0 refuses.
func Accepts(accept []string, mediaType string) bool {
	entries := parseAccept(accept)
	if len(entries) == 0 {
		return true
	}
	mediaType = strings.ToLower(mediaType)
	major, _, _ := strings.Cut(mediaType, "/")
	for _, e := range entries {
		if e.mediaType == mediaType || e.mediaType == "*/*" || e.mediaType == major+"/*" {
			if !e.refused {
				return true
			}
		}
	}
	return false
}

// NormalizeAccept returns the distinct media types named in Accept header
// values, in order, without parameters and without those refused (q=0).
func NormalizeAccept(accept []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range parseAccept(accept) {
		if e.refused || seen[e.mediaType] {
			continue
		}
		seen[e.mediaType] = true
		out = append(out, e.mediaType)
	}
	return out
}

// Descriptor is the part of an OCI content descriptor regcache needs.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
}

// Platform is the platform of an index entry.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// manifestDoc reads the references of a manifest or index.
type manifestDoc struct {
	Manifests []Descriptor `json:"manifests"`
	Config    *Descriptor  `json:"config"`
	Layers    []Descriptor `json:"layers"`
	Subject   *Descriptor  `json:"subject"`
}

// ManifestRefs parses a manifest or index and returns what it references:
// the child manifests of an index, the config and layers of an image
// manifest, and its subject when it has one.
func ManifestRefs(body []byte) (children, blobs []Descriptor, subject *Descriptor, err error) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, nil, Errorf(http.StatusBadRequest, CodeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	children = doc.Manifests
	if doc.Config != nil {
		blobs = append(blobs, *doc.Config)
	}
	blobs = append(blobs, doc.Layers...)
	return children, blobs, doc.Subject, nil
}
