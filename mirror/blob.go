package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// blobContentType is the Content-Type of every blob response.
const blobContentType = "application/octet-stream"

// serveBlob answers GET and HEAD of /v2/<name>/blobs/<digest>: from the
// cache when present, else from the one fill of that digest, which every
// concurrent client streams from as bytes arrive.
func (m *Mirror) serveBlob(w http.ResponseWriter, r *http.Request, t target, ref string) error {
	d, err := oci.ParseDigest(ref)
	if err != nil {
		return err
	}
	f, obj, err := m.store.Open(d)
	if err == nil {
		defer f.Close()
		if ce := m.log.Check(zapcore.DebugLevel, "blob hit"); ce != nil {
			ce.Write(zap.String("repository", t.repo), zap.String("digest", d.String()), zap.Int64("bytes", obj.Size))
		}
		m.serveFile(w, r, f, d, obj.Size)
		return nil
	}
	if !errors.Is(err, cache.ErrNotFound) {
		m.log.Error("opening cached blob", zap.String("digest", d.String()), zap.Error(err))
	}
	if r.Method == http.MethodHead {
		return m.headBlobUpstream(w, r, t, d)
	}
	rd, err := m.store.Fill(r.Context(), d, m.blobFetch(t, d))
	if err != nil {
		return err
	}
	defer rd.Close()
	if ce := m.log.Check(zapcore.DebugLevel, "blob miss"); ce != nil {
		ce.Write(zap.String("upstream", t.registry), zap.String("repository", t.repo),
			zap.String("digest", d.String()), zap.Int64("bytes", rd.Size()))
	}
	if f := rd.File(); f != nil {
		m.serveFile(w, r, f, d, rd.Size())
		return nil
	}
	return m.serveFill(w, r, rd, d)
}

// blobFetch returns the fill's fetch of blob d from t's upstream. It runs
// on the fill's own context, detached from the client that started it.
func (m *Mirror) blobFetch(t target, d digest.Digest) cache.FetchFunc {
	return func(ctx context.Context) (cache.Source, error) {
		resp, err := t.upstream.Do(ctx, upstream.Request{
			Method: http.MethodGet, Repository: t.repo, Path: "blobs/" + d.String(),
		})
		if err != nil {
			return cache.Source{}, fmt.Errorf("fetching blob %s@%s: %w", t.repo, d, err)
		}
		if resp.StatusCode != http.StatusOK {
			_ = resp.Body.Close()
			return cache.Source{}, badUpstream("blob %s@%s answered status %d", t.repo, d, resp.StatusCode)
		}
		// Blobs are recorded as octet-stream, so that they are never taken
		// for manifests.
		return cache.Source{Body: upstreamBody{resp.Body}, Size: resp.ContentLength, MediaType: blobContentType}, nil
	}
}

// upstreamBody marks the read errors of an upstream body (a connection cut
// short, a stall) as failures of the upstream, for the error mapping.
type upstreamBody struct{ io.ReadCloser }

func (b upstreamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: reading the upstream body: %w", errBadUpstream, err)
	}
	return n, err
}

// headBlobUpstream answers a HEAD for an uncached blob from the upstream's
// HEAD, without filling the cache.
func (m *Mirror) headBlobUpstream(w http.ResponseWriter, r *http.Request, t target, d digest.Digest) error {
	resp, err := t.upstream.Do(r.Context(), upstream.Request{
		Method: http.MethodHead, Repository: t.repo, Path: "blobs/" + d.String(),
	})
	if err != nil {
		return fmt.Errorf("checking blob %s@%s: %w", t.repo, d, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return badUpstream("blob %s@%s answered status %d to HEAD", t.repo, d, resp.StatusCode)
	}
	h := w.Header()
	h.Set("Content-Type", blobContentType)
	h.Set(oci.ContentDigestHeader, d.String())
	h.Set("Accept-Ranges", "bytes")
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
