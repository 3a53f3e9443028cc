package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

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
	cached, err := m.store.Open(r.Context(), d)
	if err == nil {
		defer cached.Close()
		if err := m.mayServe(r.Context(), t, oci.KindBlob, d); err != nil {
			return err
		}
		if err := m.admitBlob(r.Context(), t, d, cached.MediaType(), cached.Size()); err != nil {
			return err
		}
		if ce := m.log.Check(zapcore.DebugLevel, "blob hit"); ce != nil {
			ce.Write(zap.String("repository", t.repo), zap.String("digest", d.String()), zap.Int64("bytes", cached.Size()))
		}
		m.serveCached(w, r, cached, d)
		return nil
	}
	if !errors.Is(err, cache.ErrNotFound) {
		m.log.Error("opening cached blob", zap.String("digest", d.String()), zap.Error(err))
	}
	if r.Method == http.MethodHead {
		if obj, err := m.peers.StatElsewhere(d); err == nil {
			// Another node sharing the cache has it; the client may see
			// it only if the upstream lets it pull the repository.
			if err := m.mayServe(r.Context(), t, oci.KindBlob, d); err != nil {
				return err
			}
			if err := m.admitBlob(r.Context(), t, d, obj.MediaType, obj.Size); err != nil {
				return err
			}
			markSource(w, sourceCache)
			setBlobHeaders(w.Header(), d)
			w.Header().Set("Content-Length", strconv.FormatInt(obj.Size, 10))
			w.WriteHeader(http.StatusOK)
			return nil
		}
		markSource(w, sourceUpstream)
		return m.headBlobUpstream(w, r, t, d)
	}
	markSource(w, sourceUpstream)
	rd, err := m.fillBlob(r.Context(), t, d)
	if passesCache(err) {
		return m.serveUncached(w, r, t, d)
	}
	if err != nil {
		return err
	}
	defer rd.Close()
	if ce := m.log.Check(zapcore.DebugLevel, "blob miss"); ce != nil {
		ce.Write(zap.String("upstream", t.registry), zap.String("repository", t.repo),
			zap.String("digest", d.String()), zap.Int64("bytes", rd.Size()))
	}
	if rd.File() != nil || isManifestMediaType(rd.MediaType()) {
		// Stored meanwhile (a manifest is stored whole): the signature
		// rules apply to a manifest read as a blob.
		if err := m.admitBlob(r.Context(), t, d, rd.MediaType(), rd.Size()); err != nil {
			return err
		}
	}
	if rd.File() != nil {
		// Stored meanwhile: answered from the cache after all.
		markSource(w, sourceCache)
		m.serveCached(w, r, rd, d)
		return nil
	}
	if m.signaturesGuard(t) && rd.Size() <= MaxManifestSize {
		// Under a signature rule, a blob small enough to be a manifest
		// is checked whole before any byte goes out: a manifest the cache
		// did not hold, asked for at the blobs endpoint, gets the
		// manifest's admission too.
		if err := m.admitFilledBlob(r.Context(), t, rd, d); err != nil {
			return err
		}
	}
	err = m.serveFill(w, r, t, rd, d)
	if passesCache(err) {
		// The disk filled up, or the blob outgrew the budget, before this
		// client got a byte.
		return m.serveUncached(w, r, t, d)
	}
	return err
}

// fillBlob returns a reader of the fill of d: one this request starts with
// its client's credentials (the upstream's answer is the access check), or
// one it joins or finds stored, which the client may read only when
// mayServe lets it; a fill it joins then gets this client's upstream and
// credentials as a further source. A fill that another client started and the upstream
// refused to that client is tried once more with this client's own.
func (m *Mirror) fillBlob(ctx context.Context, t target, d digest.Digest) (*cache.Reader, error) {
	for attempt := 0; ; attempt++ {
		var mine atomic.Bool
		fetch := m.blobFetch(t, d)
		rd, err := m.store.Fill(ctx, d, func(fctx context.Context, off int64) (cache.Source, error) {
			mine.Store(true)
			return fetch(fctx, off)
		})
		if mine.Load() {
			return rd, err
		}
		if err != nil {
			if _, refused := refusal(err); refused && attempt == 0 {
				continue
			}
			return nil, err
		}
		if err := m.mayServe(ctx, t, oci.KindBlob, d); err != nil {
			_ = rd.Close()
			return nil, err
		}
		// The fill may take its bytes from this client's upstream too,
		// when the one it uses fails or stalls.
		rd.AddSource(fetch)
		return rd, nil
	}
}

// passesCache reports whether a fill's error means the blob must go past
// the cache, streamed from the upstream without storing: the disk is full
// or unwritable, the blob is larger than the cache budget, or the fill
// this request joined is stuck waiting for another upstream (or another
// client's credentials), which this client need not wait on.
func passesCache(err error) bool {
	return errors.Is(err, cache.ErrUnwritable) || errors.Is(err, cache.ErrTooLarge) || errors.Is(err, cache.ErrSlowFill)
}

// serveUncached streams blob d from the upstream to the client without
// storing it, while the cache disk is full or unwritable, or when the blob
// is larger than the cache budget. A whole-object
// GET is verified on the way: the last byte waits for the digest, and a
// mismatch aborts the response. A range is relayed as the upstream
// answers it (a client checks the digest of what it assembles).
func (m *Mirror) serveUncached(w http.ResponseWriter, r *http.Request, t target, d digest.Digest) error {
	hdr := http.Header{}
	if rg := r.Header.Get("Range"); rg != "" {
		// An unknown unit or an invalid range set is ignored (RFC 9110
		// section 14.2), not relayed for the upstream to refuse.
		if _, ok := parseByteRanges(rg); ok {
			hdr.Set("Range", rg)
		}
	}
	resp, err := t.do(r.Context(), upstream.Request{
		Method: http.MethodGet, Repository: t.repo, Path: "blobs/" + d.String(), Header: hdr,
	})
	if err == nil && resp.StatusCode == http.StatusPartialContent && m.signaturesGuard(t) &&
		rangeTotal(resp.Header.Get("Content-Range")) <= MaxManifestSize {
		// A range of a blob small enough to be a manifest, under a
		// signature rule: the whole blob is fetched, checked and sent
		// instead (a server may answer a range with the whole content).
		_ = resp.Body.Close()
		resp, err = t.do(r.Context(), upstream.Request{
			Method: http.MethodGet, Repository: t.repo, Path: "blobs/" + d.String(),
		})
	}
	m.noteAccess(t, err)
	if err != nil {
		return fmt.Errorf("fetching blob %s@%s: %w", t.repo, d, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return badUpstream("blob %s@%s answered status %d", t.repo, d, resp.StatusCode)
	}
	m.log.Debug("blob streamed without storing", zap.String("upstream", t.registry),
		zap.String("repository", t.repo), zap.String("digest", d.String()), zap.Int64("bytes", resp.ContentLength))
	if resp.StatusCode == http.StatusOK && m.signaturesGuard(t) && resp.ContentLength >= 0 && resp.ContentLength <= MaxManifestSize {
		// Small enough to be a manifest, under a signature rule: checked
		// whole before any byte goes out.
		return m.serveUncachedSmall(w, r, t, d, resp)
	}
	setBlobHeaders(w.Header(), d)
	if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	if resp.StatusCode == http.StatusPartialContent {
		w.Header().Set("Content-Range", resp.Header.Get("Content-Range"))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.Copy(w, upstreamBody{resp.Body})
		return nil
	}
	w.WriteHeader(http.StatusOK)
	h := d.Algorithm().Hash()
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	// One byte is always held back, so that the response can still be
	// aborted when the digest does not match.
	var held []byte
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if len(held) > 0 {
				if _, werr := w.Write(held); werr != nil {
					return nil // the client left
				}
			}
			if _, werr := w.Write(buf[:n-1]); werr != nil {
				return nil
			}
			held = append(held[:0], buf[n-1])
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			m.abort(r, d, fmt.Errorf("%w: reading the upstream body: %w", errBadUpstream, rerr))
		}
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		m.abort(r, d, fmt.Errorf("%w: %w: content hashes to %s", errBadUpstream, cache.ErrDigestMismatch, got))
	}
	_, _ = w.Write(held)
	return nil
}

// rangeTotal returns the complete length of a Content-Range value
// ("bytes 0-9/1234"); -1 when it is unknown or unreadable.
func rangeTotal(contentRange string) int64 {
	_, total, ok := strings.Cut(contentRange, "/")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(total, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// serveUncachedSmall answers an uncached blob GET of at most
// MaxManifestSize bytes under a signature rule: the upstream body is read
// whole and verified, and when it is a manifest the request gets the
// manifest's admission before any byte goes out.
func (m *Mirror) serveUncachedSmall(w http.ResponseWriter, r *http.Request, t target, d digest.Digest, resp *http.Response) error {
	data, err := io.ReadAll(io.LimitReader(upstreamBody{resp.Body}, MaxManifestSize+1))
	if err != nil {
		return err
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return fmt.Errorf("%w: blob %s@%s: %w: content hashes to %s", errBadUpstream, t.repo, d, cache.ErrDigestMismatch, got)
	}
	if mt := oci.DetectMediaType(data); isManifestMediaType(mt) {
		if err := m.admitManifest(r.Context(), t, d.String(), manifestContent{digest: d, mediaType: mt, data: data}); err != nil {
			return err
		}
	}
	setBlobHeaders(w.Header(), d)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
	return nil
}

// blobFetch returns the fill's fetch of blob d from t's upstream. It runs
// on the fill's own context, detached from the client that started it, but
// with that client's credentials (those of t). Asked for the blob
// from an offset (the fill resumes a broken download), it sends a Range;
// each call goes through the registry again, so an expired token or
// signed redirect is renewed, and the next endpoint answers when the
// first fails. From the first byte, with a cache that splits large fills,
// it asks for the first part only: the cache fetches the rest in ranges,
// so no byte crosses the link twice; a fill that continues a partial
// download likewise asks for only the bytes it wants (cache.FetchEnd).
func (m *Mirror) blobFetch(t target, d digest.Digest) cache.FetchFunc {
	return func(ctx context.Context, off int64) (cache.Source, error) {
		var end int64
		var hdr http.Header
		switch {
		case off > 0 && cache.FetchEnd(ctx) > off:
			// A fill continuing a partial download wants only the bytes
			// up to the first range it kept (or a first part).
			end = cache.FetchEnd(ctx)
			hdr = http.Header{"Range": {cache.BoundedRangeHeader(off, end)}}
		case off > 0:
			hdr = http.Header{"Range": {cache.RangeHeader(off)}}
		case m.store.SplitSize() > 0:
			end = m.store.SplitSize()
			hdr = http.Header{"Range": {cache.FirstRangeHeader(end)}}
		}
		src, err := m.getBlob(ctx, t, d, off, end, hdr)
		if end > 0 && errors.Is(err, cache.ErrRangeMismatch) {
			// An upstream that botches ranges: from off to the end in one
			// go (the whole blob from the first byte).
			var rest http.Header
			if off > 0 {
				rest = http.Header{"Range": {cache.RangeHeader(off)}}
			}
			src, err = m.getBlob(ctx, t, d, off, 0, rest)
		}
		if err != nil {
			return cache.Source{}, err
		}
		if src.Size > 0 {
			src.Segment = m.blobSegment(t, d, src.Size)
		}
		return src, nil
	}
}

// getBlob GETs blob d (from off, up to end when end > 0, as hdr asks) and
// makes the fill's Source of the answer.
func (m *Mirror) getBlob(ctx context.Context, t target, d digest.Digest, off, end int64, hdr http.Header) (cache.Source, error) {
	resp, err := t.do(ctx, upstream.Request{
		Method: http.MethodGet, Repository: t.repo, Path: "blobs/" + d.String(), Header: hdr,
	})
	if ue := (*upstream.Error)(nil); end > 0 && errors.As(err, &ue) && ue.Status == http.StatusRequestedRangeNotSatisfiable {
		// The first part of a blob smaller than the part: RFC 9110 makes
		// such a range satisfiable (its end is clamped), but some
		// registries answer 416; the caller asks for the whole blob.
		return cache.Source{}, fmt.Errorf("blob %s@%s answered 416 to its first range: %w", t.repo, d, cache.ErrRangeMismatch)
	}
	m.noteAccess(t, err)
	if err == nil && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) {
		// Linked before the fill can store it: once visible, it is
		// visible under this repository.
		m.link(t, d)
	}
	if err != nil {
		return cache.Source{}, fmt.Errorf("fetching blob %s@%s: %w", t.repo, d, err)
	}
	if resp.StatusCode != http.StatusOK && (hdr == nil || resp.StatusCode != http.StatusPartialContent) {
		_ = resp.Body.Close()
		return cache.Source{}, badUpstream("blob %s@%s answered status %d", t.repo, d, resp.StatusCode)
	}
	// Blobs are recorded as octet-stream, so that they are never taken
	// for manifests.
	src, err := cache.ResponseSource(resp, off, end, blobContentType)
	if err != nil {
		return cache.Source{}, fmt.Errorf("%w: blob %s@%s: %w", errBadUpstream, t.repo, d, err)
	}
	src.Body = upstreamBody{src.Body}
	// A body that comes too slowly sends the fill's next request to the
	// upstream's next endpoint.
	src.Demote = func(why string) bool { return t.upstream.Demote(resp, why) }
	return src, nil
}

// blobSegment returns the fetch of exact ranges of blob d (of size bytes)
// from t's upstream, with the credentials of t's client, for a fill
// fetched over several connections.
func (m *Mirror) blobSegment(t target, d digest.Digest, size int64) cache.SegmentFunc {
	return func(ctx context.Context, first, last int64) (io.ReadCloser, error) {
		resp, err := t.do(ctx, upstream.Request{
			Method: http.MethodGet, Repository: t.repo, Path: "blobs/" + d.String(),
			Header: http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", first, last)}},
		})
		if err != nil {
			return nil, fmt.Errorf("fetching blob %s@%s: %w", t.repo, d, err)
		}
		body, err := cache.ResponseSegment(resp, first, last, size)
		if err != nil {
			return nil, fmt.Errorf("blob %s@%s: %w", t.repo, d, err)
		}
		return upstreamBody{body}, nil
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
	resp, err := m.upstreamDo(r.Context(), t, upstream.Request{
		Method: http.MethodHead, Repository: t.repo, Path: "blobs/" + d.String(),
	})
	m.noteAccess(t, err)
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
