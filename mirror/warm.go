package mirror

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/oci"
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
// the mirror's own request handling (the same fills, checks and
// accounting as a client's pull), for the given platforms ("linux/amd64",
// "linux/arm/v7"; all when none). progress is called after every manifest
// and blob, and once more with Done or Error set. A failed request is a
// *PullError.
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
	if _, ok := m.upstreams[ref.Registry]; !ok {
		return nil, report(fmt.Errorf("registry %q is not mirrored here", ref.Registry))
	}
	name := m.pathName(ref)
	reference := ref.Tag
	if ref.Digest != "" {
		reference = ref.Digest.String()
	}
	var blobs []oci.Descriptor
	var walked []digest.Digest
	seen := map[string]bool{}
	var walk func(reference string, depth int) error
	walk = func(reference string, depth int) error {
		body, hdr, err := m.internalGet(ctx, "/v2/"+name+"/manifests/"+reference, oci.AcceptHeader(digestAccept), true)
		if err != nil {
			return err
		}
		if d, err := digest.Parse(hdr.Get(oci.ContentDigestHeader)); err == nil {
			walked = append(walked, d)
		}
		p.Manifests++
		progress(p)
		children, layers, _, err := oci.ManifestRefs(body)
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
			if _, _, err := m.internalGet(ctx, "/v2/"+name+"/blobs/"+b.Digest, "", false); err != nil {
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

// pathName is the repository of ref as a request path names it: with its
// registry in front unless it is the default upstream.
func (m *Mirror) pathName(ref ImageRef) string {
	if ref.Registry != m.defaultName {
		return ref.Registry + "/" + ref.Repository
	}
	return ref.Repository
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

// PullError is a request of Warm or Sync that the mirror did not answer
// with 200.
type PullError struct {
	// Path is the request's path.
	Path string
	// Status is the mirror's answer; 0 when the response was aborted.
	Status int
	// Code and Message are the first OCI error of the answer, if any.
	Code    oci.Code
	Message string
	// RetryAfter is the answer's Retry-After, when it has one.
	RetryAfter time.Duration
}

// Error implements error.
func (e *PullError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("GET %s: the response was aborted: the upstream sent bad content", e.Path)
	}
	msg := ""
	if e.Code != "" {
		msg = ": " + string(e.Code) + " " + e.Message
	}
	return fmt.Sprintf("GET %s: status %d%s", e.Path, e.Status, msg)
}

// internalKey marks the requests that Warm and Sync send through the
// mirror, which are not a client's pulls.
type internalKey struct{}

// internal reports whether ctx is that of a request of Warm or Sync.
func internal(ctx context.Context) bool {
	v, _ := ctx.Value(internalKey{}).(bool)
	return v
}

// internalGet sends a GET through the mirror as a client would and
// returns the answer's body (nil unless keepBody: a blob's body is
// discarded as it streams) and headers. An answer other than 200, or a
// response the mirror aborts (a bad upstream body), is a *PullError.
func (m *Mirror) internalGet(ctx context.Context, path, accept string, keepBody bool) (body []byte, hdr http.Header, err error) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, internalKey{}, true), http.MethodGet, path, nil)
	if err != nil {
		return nil, nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	var w http.ResponseWriter
	rec := httptest.NewRecorder()
	discard := &discardWriter{header: http.Header{}}
	if keepBody {
		w = rec
	} else {
		w = discard
	}
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			err = &PullError{Path: path}
		}
	}()
	m.ServeHTTP(w, req)
	status, hdr := rec.Code, rec.Header()
	if !keepBody {
		status, hdr = discard.status, discard.header
	}
	if status != http.StatusOK {
		e := &PullError{Path: path, Status: status}
		if items := oci.ParseErrorBody(rec.Body.Bytes()); keepBody && len(items) > 0 {
			e.Code, e.Message = items[0].Code, items[0].Message
		}
		if secs, perr := strconv.Atoi(hdr.Get("Retry-After")); perr == nil && secs > 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
		return nil, hdr, e
	}
	if ctx.Err() != nil {
		return nil, hdr, ctx.Err()
	}
	if keepBody {
		return rec.Body.Bytes(), hdr, nil
	}
	return nil, hdr, nil
}

// discardWriter is the ResponseWriter of a warming blob request: it keeps
// the status and drops the body.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header { return d.header }

func (d *discardWriter) WriteHeader(status int) {
	if d.status == 0 {
		d.status = status
	}
}

func (d *discardWriter) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return len(p), nil
}

// Flush does nothing; it lets the mirror flush as it would to a client.
func (d *discardWriter) Flush() {}

// Interface guards
var _ error = (*PullError)(nil)
