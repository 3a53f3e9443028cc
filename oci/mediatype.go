package oci

import (
	"bytes"
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
	MediaType  string          `json:"mediaType"`
	Manifests  json.RawMessage `json:"manifests"`
	Config     json.RawMessage `json:"config"`
	Layers     json.RawMessage `json:"layers"`
	FSLayers   json.RawMessage `json:"fsLayers"`
	Signatures json.RawMessage `json:"signatures"`
}

// present reports whether a field was in the document with a non-null value.
func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// DetectMediaType returns the media type of a manifest document: its
// "mediaType" field when set; else an OCI index when it has "manifests", an
// OCI manifest when it has "config" and "layers", a Docker schema 1
// manifest (signed when it has "signatures") when it has "fsLayers"; else
// "" (also for a body that is not a JSON object).
func DetectMediaType(body []byte) string {
	var p mediaTypeProbe
	if err := json.Unmarshal(body, &p); err != nil {
		return ""
	}
	switch {
	case p.MediaType != "":
		return p.MediaType
	case present(p.Manifests):
		return MediaTypeOCIIndex
	case present(p.Config) && present(p.Layers):
		return MediaTypeOCIManifest
	case present(p.FSLayers) && present(p.Signatures):
		return MediaTypeDockerSchema1Signed
	case present(p.FSLayers):
		return MediaTypeDockerSchema1
	}
	return ""
}

// AcceptHeader joins media types into one Accept header value.
func AcceptHeader(mediaTypes []string) string {
	return strings.Join(mediaTypes, ", ")
}

// acceptEntry is one media range of an Accept header.
type acceptEntry struct {
	mediaType string // lowercase, without parameters
	refused   bool   // q=0
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
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					q, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					e.refused = err == nil && q <= 0
				}
			}
			out = append(out, e)
		}
	}
	return out
}

// Accepts reports whether the Accept header values (r.Header.Values("Accept"),
// each possibly a comma-separated list with ";q=" parameters) allow
// mediaType. No values at all allow everything. A range matches mediaType
// exactly, as "<type>/*" or as "*/*" (case-insensitively); the most specific
// matching range decides, and q=0 refuses.
func Accepts(accept []string, mediaType string) bool {
	entries := parseAccept(accept)
	if len(entries) == 0 {
		return true
	}
	mt, _, _ := strings.Cut(mediaType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	major, _, _ := strings.Cut(mt, "/")
	best, allowed := 0, false
	for _, e := range entries {
		var rank int
		switch {
		case e.mediaType == mt:
			rank = 3
		case e.mediaType == "*/*":
			rank = 1
		case strings.HasSuffix(e.mediaType, "/*") && e.mediaType[:len(e.mediaType)-2] == major:
			rank = 2
		default:
			continue
		}
		if rank > best {
			best, allowed = rank, !e.refused
		} else if rank == best && !e.refused {
			allowed = true
		}
	}
	return allowed
}

// NormalizeAccept returns the distinct media types named in the Accept
// header values, in order, lowercase, without parameters and without those
// refused with q=0. It is what regcache forwards upstream for a client.
func NormalizeAccept(accept []string) []string {
	var out []string
	for _, e := range parseAccept(accept) {
		if !e.refused && !containsString(out, e.mediaType) {
			out = append(out, e.mediaType)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
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
// for an index its child manifests; for an image manifest its config and
// layers, config first; and the subject of either when it has one. The
// descriptors are as the document wrote them: check a Digest with
// ParseDigest before using it. A body that is not a JSON object of that
// shape is an *Error with CodeManifestInvalid.
func ManifestRefs(body []byte) (children, blobs []Descriptor, subject *Descriptor, err error) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, nil, Errorf(http.StatusBadRequest, CodeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return nil, nil, nil, Errorf(http.StatusBadRequest, CodeManifestInvalid, "manifest is JSON null, not an object")
	}
	children = doc.Manifests
	if doc.Config != nil {
		blobs = append(blobs, *doc.Config)
	}
	blobs = append(blobs, doc.Layers...)
	return children, blobs, doc.Subject, nil
}
