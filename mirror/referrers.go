package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// filtersAppliedHeader tells a client which referrers filters were applied.
const filtersAppliedHeader = "OCI-Filters-Applied"

// referrersIndex is the OCI image index a referrers response carries.
type referrersIndex struct {
	SchemaVersion int              `json:"schemaVersion"`
	MediaType     string           `json:"mediaType"`
	Manifests     []oci.Descriptor `json:"manifests"`
}

// serveReferrers answers GET /v2/<name>/referrers/<digest>. It passes the
// request through when the upstream has the referrers API; when the
// upstream answers 404 (Docker Hub does), it answers from the referrers tag
// schema (the sha256-<hex> tag), as the spec asks of a registry that offers
// the API, and an empty index when there is no such tag.
func (m *Mirror) serveReferrers(w http.ResponseWriter, r *http.Request, t target, ref string) error {
	markSource(w, sourceUpstream) // lists always come from the upstream
	d, err := oci.ParseDigest(ref)
	if err != nil {
		return err
	}
	artifactType := r.URL.Query().Get("artifactType")
	q := url.Values{}
	if artifactType != "" {
		q.Set("artifactType", artifactType)
	}
	resp, err := m.upstreamDo(r.Context(), t, upstream.Request{
		Method: http.MethodGet, Repository: t.repo, Path: "referrers/" + d.String(), Query: q,
		Header: http.Header{"Accept": {oci.MediaTypeOCIIndex}},
	})
	if err == nil {
		defer resp.Body.Close()
		if applied := resp.Header.Get(filtersAppliedHeader); applied != "" {
			w.Header().Set(filtersAppliedHeader, applied)
		}
		return relayJSON(w, r, resp, nil)
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Status != http.StatusNotFound {
		return fmt.Errorf("listing referrers of %s@%s: %w", t.repo, d, err)
	}
	index, err := m.referrersFromTag(r.Context(), t, d)
	if err != nil {
		return err
	}
	if artifactType != "" {
		kept := index.Manifests[:0]
		for _, desc := range index.Manifests {
			if desc.ArtifactType == artifactType {
				kept = append(kept, desc)
			}
		}
		index.Manifests = kept
		w.Header().Set(filtersAppliedHeader, "artifactType")
	}
	body, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("encoding referrers index: %w", err)
	}
	w.Header().Set("Content-Type", oci.MediaTypeOCIIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// referrersFromTag reads the referrers tag schema's index for d (the tag
// "<alg>-<hex>"), or an empty index when the tag does not exist.
func (m *Mirror) referrersFromTag(ctx context.Context, t target, d digest.Digest) (referrersIndex, error) {
	index := referrersIndex{SchemaVersion: 2, MediaType: oci.MediaTypeOCIIndex, Manifests: []oci.Descriptor{}}
	tag := d.Algorithm().String() + "-" + d.Encoded()
	mc, err := m.manifestByTag(ctx, t, tag, nil)
	if err != nil {
		var ue *upstream.Error
		if errors.As(err, &ue) && ue.Status == http.StatusNotFound {
			return index, nil
		}
		return index, fmt.Errorf("reading referrers tag %s of %s: %w", tag, t.repo, err)
	}
	if !oci.IsIndex(mc.mediaType) {
		return index, nil
	}
	children, _, _, err := oci.ManifestRefs(mc.data)
	if err != nil {
		return index, badUpstream("referrers tag %s of %s is not a valid index", tag, t.repo)
	}
	index.Manifests = append(index.Manifests, children...)
	return index, nil
}
