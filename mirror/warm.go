package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// WarmProgress reports how far the warming of one image is.
type WarmProgress struct {
	// Image is the image as given.
	Image string `json:"image"`
	// Manifests is the number of manifests fetched so far.
	Manifests int `json:"manifests"`
	// Blobs and BlobsTotal are the blobs in the cache so far and those
	// the image needs (known once its manifests are read).
	Blobs      int `json:"blobs"`
	BlobsTotal int `json:"blobs_total"`
	// Bytes and BytesTotal are the same in bytes.
	Bytes      int64 `json:"bytes"`
	BytesTotal int64 `json:"bytes_total"`
	// FetchedBytes are the bytes of the blobs that were not cached yet
	// and came from the upstream.
	FetchedBytes int64 `json:"fetched_bytes"`
	// Done is set on the image's last report.
	Done bool `json:"done,omitempty"`
	// Error is why the image could not be warmed, on its last report.
	Error string `json:"error,omitempty"`
}

// Warm fills the cache with every manifest and blob of an image, through
// the mirror's own pull path (the same policy, access checks, fills and
// prefetch as a client's pull with no credentials of its own), for the
// given platforms ("linux/amd64", "linux/arm/v7"; all when none). progress
// is called after every manifest and blob, and once more with Done or
// Error set. A failed pull is a *PullError.
func (m *Mirror) Warm(ctx context.Context, image string, platforms []string, progress func(WarmProgress)) error {
	_, err := m.pull(ctx, image, platforms, progress)
	return err
}

// pull is Warm, returning the digests of the manifests and blobs the image
// has for the platforms, all of them cached when it succeeds.
func (m *Mirror) pull(ctx context.Context, image string, platforms []string, progress func(WarmProgress)) ([]digest.Digest, error) {
	p := WarmProgress{Image: image}
	report := func(err error) error {
		if err != nil {
			p.Error = err.Error()
		} else {
			p.Done = true
		}
		progress(p)
		return err
	}
	ref, err := ParseImageRef(image, m.defaultName, false)
	if err != nil {
		return nil, report(err)
	}
	t, err := m.refTarget(ref)
	if err != nil {
		return nil, report(err)
	}
	reference := ref.Tag
	if ref.Digest != "" {
		reference = ref.Digest.String()
	}
	var blobs []oci.Descriptor
	var walked []digest.Digest
	seen := map[string]bool{}
	var walk func(reference string, depth int) error
	walk = func(reference string, depth int) error {
		mc, err := m.pullManifest(ctx, t, reference)
		if err != nil {
			return err
		}
		walked = append(walked, mc.digest)
		p.Manifests++
		progress(p)
		children, layers, _, err := oci.ManifestRefs(mc.data)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", reference, err)
		}
		for _, c := range children {
			if depth >= maxIndexDepth || !platformWanted(c.Platform, platforms) {
				continue
			}
			if err := walk(c.Digest, depth+1); err != nil {
				return err
			}
		}
		for _, b := range layers {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				blobs = append(blobs, b)
				p.BlobsTotal++
				p.BytesTotal += b.Size
			}
		}
		return nil
	}
	if err := walk(reference, 0); err != nil {
		return nil, report(err)
	}
	progress(p)
	for _, b := range blobs {
		d, err := oci.ParseDigest(b.Digest)
		if err != nil {
			return nil, report(fmt.Errorf("blob %q: %w", b.Digest, err))
		}
		// A blob already cached need not be read.
		if _, err := m.store.Inspect(d); err != nil {
			if err := m.pullBlob(ctx, t, d); err != nil {
				return nil, report(err)
			}
			p.FetchedBytes += b.Size
		}
		walked = append(walked, d)
		p.Blobs++
		p.Bytes += b.Size
		progress(p)
	}
	return walked, report(nil)
}

// refTarget returns the target of an image reference, as a request naming
// it by path would resolve it.
func (m *Mirror) refTarget(ref ImageRef) (target, error) {
	if _, ok := m.upstreams[ref.Registry]; !ok {
		return target{}, fmt.Errorf("registry %q is not mirrored here", ref.Registry)
	}
	name := ref.Repository
	if ref.Registry != m.defaultName {
		name = ref.Registry + "/" + ref.Repository
	}
	return newTarget(m.upstreams[ref.Registry], ref.Registry, ref.Repository, name), nil
}

// pullManifest pulls a manifest by tag or digest the way a client's GET
// does (asking for every manifest type), checked by the policy first; a
// failure is a *PullError.
func (m *Mirror) pullManifest(ctx context.Context, t target, reference string) (manifestContent, error) {
	err := m.checkPolicy(t, oci.KindManifest, reference)
	if err == nil {
		var mc manifestContent
		mc, err = m.manifest(ctx, t, reference, []string{oci.AcceptHeader(digestAccept)})
		if err == nil {
			m.stats.requests.count(oci.KindManifest, mc.source, false, int64(len(mc.data)))
			return mc, nil
		}
	}
	m.stats.requests.count(oci.KindManifest, sourceUpstream, true, 0)
	return manifestContent{}, pullError(ctx, t, oci.KindManifest, reference, err)
}

// pullBlob brings blob d into the cache the way a client's GET does: a
// cached blob is checked as a hit is (access, and the signature rules when
// it is a manifest), else the one fill of d is started or joined and
// waited for until the blob verified and was stored. A blob the cache
// cannot store (the disk is full, or it is larger than the budget) is an
// error: a client would have been streamed it past the cache. A failure
// is a *PullError.
func (m *Mirror) pullBlob(ctx context.Context, t target, d digest.Digest) error {
	err := m.checkPolicy(t, oci.KindBlob, d.String())
	if err == nil {
		var src source
		var size int64
		src, size, err = m.fillAndWait(ctx, t, d)
		if err == nil {
			// Counted as a client's GET of the blob would be.
			m.stats.requests.count(oci.KindBlob, src, false, size)
			return nil
		}
	}
	m.stats.requests.count(oci.KindBlob, sourceUpstream, true, 0)
	return pullError(ctx, t, oci.KindBlob, d.String(), err)
}

// fillAndWait is pullBlob past the policy's first check. It returns where
// the blob came from and its size.
func (m *Mirror) fillAndWait(ctx context.Context, t target, d digest.Digest) (source, int64, error) {
	if cached, err := m.store.Open(ctx, d); err == nil {
		defer cached.Close()
		if err := m.mayServe(ctx, t, oci.KindBlob, d); err != nil {
			return 0, 0, err
		}
		return sourceCache, cached.Size(), m.admitBlob(ctx, t, d, cached.MediaType(), cached.Size())
	}
	rd, err := m.fillBlob(ctx, t, d)
	if passesCache(err) {
		return 0, 0, fmt.Errorf("blob %s@%s could not be stored: %w", t.repo, d, err)
	}
	if err != nil {
		return 0, 0, err
	}
	defer rd.Close()
	src := sourceUpstream
	if rd.File() != nil || isManifestMediaType(rd.MediaType()) {
		if err := m.admitBlob(ctx, t, d, rd.MediaType(), rd.Size()); err != nil {
			return 0, 0, err
		}
	}
	if rd.File() != nil {
		src = sourceCache // stored meanwhile
	} else if m.signaturesGuard(t) && rd.Size() <= MaxManifestSize {
		if err := m.admitFilledBlob(ctx, t, rd, d); err != nil {
			return 0, 0, err
		}
	}
	if err := rd.Wait(ctx); err != nil {
		return 0, 0, err
	}
	if _, err := m.store.Inspect(d); err != nil {
		// Verified, but not stored: the disk filled up, or the blob
		// outgrew the budget, meanwhile.
		return 0, 0, fmt.Errorf("blob %s@%s could not be stored: %w", t.repo, d, cache.ErrUnwritable)
	}
	return src, rd.Size(), nil
}

// platformWanted reports whether an index entry's platform is among the
// wanted ones ("os/architecture[/variant]"); every entry is wanted when
// none are given. Entries without a platform, or for "unknown/unknown"
// (attestations), go with any choice of platforms.
func platformWanted(p *oci.Platform, wanted []string) bool {
	if len(wanted) == 0 || p == nil || p.OS == "unknown" {
		return true
	}
	have := p.OS + "/" + p.Architecture
	return slices.ContainsFunc(wanted, func(w string) bool {
		w = strings.ToLower(strings.TrimSpace(w))
		return w == have || (p.Variant != "" && w == have+"/"+p.Variant)
	})
}

// PullError is a manifest or blob that Warm or Sync could not pull, with
// the answer a client's GET of it would have had.
type PullError struct {
	// Path is the path of that request.
	Path string
	// Status is the status of the answer.
	Status int
	// Code and Message are the first OCI error of the answer, if any.
	Code    oci.Code
	Message string
	// RetryAfter is the answer's Retry-After, when it has one.
	RetryAfter time.Duration
	// Err is the failure itself.
	Err error
}

// Unwrap returns the failure.
func (e *PullError) Unwrap() error { return e.Err }

// Error implements error.
func (e *PullError) Error() string {
	msg := ""
	if e.Code != "" {
		msg = ": " + string(e.Code) + " " + e.Message
	}
	return fmt.Sprintf("GET %s: status %d%s", e.Path, e.Status, msg)
}

// pullError is the *PullError of err, which a pull of kind at reference
// in t met: the answer a client's GET would have had. The end of ctx is
// returned as it is.
func pullError(ctx context.Context, t target, kind oci.Kind, reference string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	path := "/v2/" + t.clientName + "/manifests/" + reference
	if kind == oci.KindBlob {
		path = "/v2/" + t.clientName + "/blobs/" + reference
	}
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Status == http.StatusNotFound && len(ue.Items) == 0 {
		err = oci.Errorf(http.StatusNotFound, unknownCode(kind), "%s unknown to the upstream registry %s", kind, ue.Upstream)
	}
	oe := toOCI(err)
	e := &PullError{Path: path, Status: oe.Status, Err: err}
	if len(oe.Items) > 0 {
		e.Code, e.Message = oe.Items[0].Code, oe.Items[0].Message
	}
	if secs, perr := strconv.Atoi(oe.RetryAfter); perr == nil && secs > 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	return e
}

// Interface guards
var _ error = (*PullError)(nil)
