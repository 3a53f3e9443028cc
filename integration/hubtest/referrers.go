package hubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regcache/regcache/oci"
)

// manifestAccept is the Accept header of the hub's own manifest reads.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageManifest,
	ocispec.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// maxManifest is the largest manifest the hub reads.
const maxManifest = 4 << 20

// serveReferrers answers /v2/<name>/referrers/<digest> from the registry:
// an OCI index of the tagged manifests whose subject is the digest, plus
// the entries of the referrers tag schema's index (tag sha256-<hex>). The
// artifactType query parameter filters the result.
func (h *Hub) serveReferrers(w http.ResponseWriter, r *http.Request, rt route) {
	subject, err := digest.Parse(rt.ref)
	if err != nil {
		oci.Errorf(0, oci.CodeDigestInvalid, "invalid digest %q", rt.ref).Write(w, r)
		return
	}
	descs, err := h.referrers(r.Context(), rt.repo, subject)
	if err != nil {
		if r.Context().Err() == nil {
			oci.Errorf(http.StatusBadGateway, oci.CodeUnavailable, "listing referrers: %v", err).Write(w, r)
		}
		return
	}
	if want, ok := r.URL.Query()["artifactType"]; ok && len(want) > 0 {
		kept := descs[:0]
		for _, d := range descs {
			if d.ArtifactType == want[0] {
				kept = append(kept, d)
			}
		}
		descs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	body, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: descs,
	})
	if err != nil {
		oci.Errorf(0, oci.CodeUnknown, "encoding referrers: %v", err).Write(w, r)
		return
	}
	w.Header().Set(oci.APIVersionHeader, oci.APIVersion)
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// referrers scans the tags of repo for manifests whose subject is subject.
func (h *Hub) referrers(ctx context.Context, repo string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	tags, err := h.listTags(ctx, repo)
	if err != nil {
		return nil, err
	}
	fallback := subject.Algorithm().String() + "-" + subject.Encoded()
	descs := []ocispec.Descriptor{}
	seen := map[digest.Digest]bool{}
	add := func(d ocispec.Descriptor) {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			descs = append(descs, d)
		}
	}
	for _, tag := range tags {
		body, mediaType, err := h.getManifest(ctx, repo, tag)
		if err != nil {
			return nil, err
		}
		var m struct {
			MediaType    string               `json:"mediaType"`
			ArtifactType string               `json:"artifactType"`
			Config       *ocispec.Descriptor  `json:"config"`
			Subject      *ocispec.Descriptor  `json:"subject"`
			Manifests    []ocispec.Descriptor `json:"manifests"`
			Annotations  map[string]string    `json:"annotations"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			continue // not a manifest the referrers API can list
		}
		if tag == fallback && mediaType == ocispec.MediaTypeImageIndex {
			for _, d := range m.Manifests {
				add(d)
			}
		}
		if m.Subject == nil || m.Subject.Digest != subject {
			continue
		}
		artifactType := m.ArtifactType
		if artifactType == "" && m.Config != nil {
			artifactType = m.Config.MediaType
		}
		add(ocispec.Descriptor{
			MediaType:    mediaType,
			ArtifactType: artifactType,
			Digest:       digest.FromBytes(body),
			Size:         int64(len(body)),
			Annotations:  m.Annotations,
		})
	}
	return descs, nil
}

// listTags returns every tag of repo in the registry (none for an
// unknown repository).
func (h *Hub) listTags(ctx context.Context, repo string) ([]string, error) {
	body, status, _, err := h.registryGet(ctx, "/v2/"+repo+"/tags/list", "")
	if err != nil {
		return nil, err
	}
	if status == http.StatusNotFound {
		return nil, nil
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("listing tags of %s: status %d", repo, status)
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("decoding the tags of %s: %w", repo, err)
	}
	return list.Tags, nil
}

// getManifest reads repo's manifest by tag or digest from the registry.
func (h *Hub) getManifest(ctx context.Context, repo, ref string) (body []byte, mediaType string, err error) {
	body, status, header, err := h.registryGet(ctx, "/v2/"+repo+"/manifests/"+url.PathEscape(ref), manifestAccept)
	if err != nil {
		return nil, "", err
	}
	if status != http.StatusOK {
		return nil, "", fmt.Errorf("reading manifest %s:%s: status %d", repo, ref, status)
	}
	return body, header.Get("Content-Type"), nil
}

// registryGet GETs path from the raw registry and reads at most
// maxManifest bytes of the body.
func (h *Hub) registryGet(ctx context.Context, path, accept string) ([]byte, int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.RegistryURL+path, nil)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("building a request for %s: %w", path, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := h.transport.RoundTrip(req)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("requesting %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest))
	if err != nil {
		return nil, 0, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return body, resp.StatusCode, resp.Header, nil
}
