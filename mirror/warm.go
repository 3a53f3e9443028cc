package mirror

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

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
	// Done is set on the image's last report.
	Done bool `json:"done,omitempty"`
	// Error is why the image could not be warmed, on its last report.
	Error string `json:"error,omitempty"`
}

// Warm fills the cache with every manifest and blob of an image, through
// the mirror's own request handling (the same fills, checks and
// accounting as a client's pull), for the given platforms ("linux/amd64",
// "linux/arm/v7"; all when none). progress is called after every manifest
// and blob, and once more with Done or Error set.
func (m *Mirror) Warm(ctx context.Context, image string, platforms []string, progress func(WarmProgress)) error {
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
		return report(err)
	}
	if _, ok := m.upstreams[ref.Registry]; !ok {
		return report(fmt.Errorf("registry %q is not mirrored here", ref.Registry))
	}
	name := ref.Repository
	if ref.Registry != m.defaultName {
		name = ref.Registry + "/" + ref.Repository
	}
	reference := ref.Tag
	if ref.Digest != "" {
		reference = ref.Digest.String()
	}
	var blobs []oci.Descriptor
	seen := map[string]bool{}
	var walk func(reference string, depth int) error
	walk = func(reference string, depth int) error {
		body, err := m.warmGet(ctx, "/v2/"+name+"/manifests/"+reference, true)
		if err != nil {
			return err
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
		return report(err)
	}
	progress(p)
	for _, b := range blobs {
		d, err := oci.ParseDigest(b.Digest)
		if err != nil {
			return report(fmt.Errorf("blob %q: %w", b.Digest, err))
		}
		// A blob already cached need not be read.
		if _, err := m.store.Inspect(d); err != nil {
			if _, err := m.warmGet(ctx, "/v2/"+name+"/blobs/"+b.Digest, false); err != nil {
				return report(err)
			}
		}
		p.Blobs++
		p.Bytes += b.Size
		progress(p)
	}
	return report(nil)
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

// warmGet sends a GET through the mirror as a client would and returns the
// body of a manifest (nil for a blob, whose body is discarded as it
// streams). A response the mirror aborts (a bad upstream body) is an
// error.
func (m *Mirror) warmGet(ctx context.Context, path string, manifest bool) (body []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if manifest {
		req.Header.Set("Accept", oci.AcceptHeader(digestAccept))
	}
	var w http.ResponseWriter
	rec := httptest.NewRecorder()
	discard := &discardWriter{header: http.Header{}}
	if manifest {
		w = rec
	} else {
		w = discard
	}
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			err = fmt.Errorf("GET %s: the response was aborted: the upstream sent bad content", path)
		}
	}()
	m.ServeHTTP(w, req)
	status := rec.Code
	if !manifest {
		status = discard.status
	}
	if status != http.StatusOK {
		msg := ""
		if items := oci.ParseErrorBody(rec.Body.Bytes()); manifest && len(items) > 0 {
			msg = ": " + string(items[0].Code) + " " + items[0].Message
		}
		return nil, fmt.Errorf("GET %s: status %d%s", path, status, msg)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if manifest {
		return rec.Body.Bytes(), nil
	}
	return nil, nil
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
