package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// manifestContent is one manifest: its exact upstream bytes, digest and
// media type.
type manifestContent struct {
	digest    digest.Digest
	mediaType string
	data      []byte
	// source is where the answer came from, for the request counters.
	source source
}

// tagKey identifies one tag resolution, as the key of an access.Key (what
// the upstream answers one client is not another's); accept is the media
// types asked of the upstream, since an upstream may answer a tag
// differently per Accept.
type tagKey struct {
	registry, repo, tag, accept string
	// confirm is set for a sync, which asks the upstream even within the
	// TTL and takes no stale answer.
	confirm bool
}

// manifestKey identifies one fetch of a manifest by digest, as the key of
// an access.Key.
type manifestKey struct {
	registry, repo string
	d              digest.Digest
}

// resolvedTag is what a tag points at. content.data is nil when only the
// digest is known and the bytes come from the cache by digest.
type resolvedTag struct {
	content manifestContent
	// stale is set when the upstream could not confirm the tag and its
	// last known digest is served.
	stale bool
}

// serveManifest answers GET and HEAD of /v2/<name>/manifests/<reference>.
func (m *Mirror) serveManifest(w http.ResponseWriter, r *http.Request, t target, ref string) error {
	mc, err := m.manifest(r.Context(), t, ref, r.Header.Values("Accept"))
	if err != nil {
		return err
	}
	markSource(w, mc.source)
	writeManifest(w, r, mc)
	return nil
}

// manifest is the pull of a manifest by tag or digest, for a client that
// accepts the media types of clientAccept (Accept header values): resolved
// from the cache or the upstream, admitted by the policy, and with the
// image's blobs prefetched when the manifest came from the upstream.
func (m *Mirror) manifest(ctx context.Context, t target, ref string, clientAccept []string) (manifestContent, error) {
	var (
		mc  manifestContent
		err error
	)
	if strings.Contains(ref, ":") {
		d, perr := oci.ParseDigest(ref)
		if perr != nil {
			return manifestContent{}, perr
		}
		mc, err = m.manifestByDigest(ctx, t, d)
	} else {
		mc, err = m.manifestByTag(ctx, t, ref, clientAccept)
	}
	if err != nil {
		return manifestContent{}, err
	}
	if err := m.admitManifest(ctx, t, ref, mc); err != nil {
		return manifestContent{}, err
	}
	if mc.source == sourceUpstream {
		// Only once the policy admitted it: a refused image costs no
		// layer download.
		m.prefetch(t, mc)
	}
	return mc, nil
}

// writeManifest sends a manifest's exact bytes with its digest and media
// type. A plain GET or HEAD is answered directly; ranges and conditional
// requests (If-None-Match) go through serveContent.
func writeManifest(w http.ResponseWriter, r *http.Request, mc manifestContent) {
	h := w.Header()
	mediaType := mc.mediaType
	if mediaType == "" {
		mediaType = oci.DetectMediaType(mc.data)
	}
	if mediaType == "" {
		mediaType = oci.MediaTypeOCIManifest
	}
	h.Set("Content-Type", mediaType)
	h.Set(oci.ContentDigestHeader, mc.digest.String())
	h.Set("Etag", `"`+mc.digest.String()+`"`)
	r = withSettledRange(r, int64(len(mc.data)))
	if needsServeContent(r) {
		serveContent(w, r, bytes.NewReader(mc.data), int64(len(mc.data)))
		return
	}
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.Itoa(len(mc.data)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(mc.data)
	}
}

// manifestByDigest returns a manifest by digest: from the cache when
// present (no upstream request at all), else, unless the upstream said 404
// for it within the negative TTL, fetched once from the upstream, verified
// against d and stored.
func (m *Mirror) manifestByDigest(ctx context.Context, t target, d digest.Digest) (manifestContent, error) {
	if mc, found, err := m.cachedManifest(ctx, t, d); found {
		if err == nil {
			if ce := m.log.Check(zapcore.DebugLevel, "manifest hit"); ce != nil {
				ce.Write(zap.String("repository", t.repo), zap.String("digest", d.String()))
			}
		}
		return mc, err
	}
	nkey := negativeKeyOf(t, d.String(), digestAccept)
	if err := m.rememberedMissing(nkey); err != nil {
		return manifestContent{}, err
	}
	// Per identity: what the upstream answers one client is not another's.
	key := access.KeyOf(t.who, manifestKey{registry: t.registry, repo: t.repo, d: d})
	return m.manifestFlight.Do(ctx, key, func(ctx context.Context) (manifestContent, error) {
		// By digest, the content is fixed: ask for every manifest type.
		return m.fetchDigestOnce(ctx, t, d)
	})
}

// cachedManifest returns manifest d from the cache, when the cache holds d
// as a manifest, and t's client may have it (mayServe decides, with
// an error). found is false when the cache holds no manifest d: absent,
// over the size limit, unreadable (logged), or a blob of that digest (a
// config, a layer), which is not served as a manifest.
func (m *Mirror) cachedManifest(ctx context.Context, t target, d digest.Digest) (mc manifestContent, found bool, err error) {
	data, obj, err := m.store.ReadAll(d, MaxManifestSize)
	if err != nil {
		if !errors.Is(err, cache.ErrNotFound) && !errors.Is(err, cache.ErrTooLarge) {
			m.log.Error("reading cached manifest", zap.String("digest", d.String()), zap.Error(err))
		}
		return manifestContent{}, false, nil
	}
	mediaType := obj.MediaType
	if mediaType == "" {
		mediaType = oci.DetectMediaType(data)
	}
	if !isManifestMediaType(mediaType) {
		return manifestContent{}, false, nil
	}
	if err := m.mayServe(ctx, t, oci.KindManifest, d); err != nil {
		return manifestContent{}, true, err
	}
	return manifestContent{digest: d, mediaType: mediaType, data: data}, true, nil
}

// tagRecord returns the cached record of a tag, whether the client accepts
// its media type (known), and whether it is also within the TTL (fresh).
func (m *Mirror) tagRecord(t target, tag string, clientAccept []string) (rec cache.Tag, known, fresh bool) {
	rec, err := m.records.Tag(t.registry, t.repo, tag)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		m.log.Error("reading tag record", zap.String("upstream", t.registry),
			zap.String("repository", t.repo), zap.String("tag", tag), zap.Error(err))
	}
	known = err == nil && oci.Accepts(clientAccept, rec.MediaType)
	if known && m.now().Sub(rec.FetchedAt) >= m.cfg.TagTTL {
		// Another node sharing the cache may have revalidated it.
		rec = m.records.RefreshTag(t.registry, t.repo, tag, rec)
		known = oci.Accepts(clientAccept, rec.MediaType)
	}
	return rec, known, known && m.now().Sub(rec.FetchedAt) < m.cfg.TagTTL
}

// manifestByTag resolves a tag remote-first within the TTL: a fresh record
// is trusted, a stale one is revalidated with a HEAD (served as it is when
// the upstream cannot answer), and an unknown tag is fetched with a GET,
// unless the upstream said 404 for it within the negative TTL. Concurrent
// resolutions of one tag share one flight, hence one upstream request.
func (m *Mirror) manifestByTag(ctx context.Context, t target, tag string, clientAccept []string) (manifestContent, error) {
	accept := upstreamAccept(clientAccept)
	// Only an answer to the full set of manifest types is the tag's
	// canonical record; a client that accepts less may be answered with a
	// different manifest (a platform's image instead of the index).
	canonical := coversAllManifestTypes(accept)
	confirm := mustConfirm(ctx)
	if rec, _, fresh := m.tagRecord(t, tag, clientAccept); fresh && !confirm {
		if ce := m.log.Check(zapcore.DebugLevel, "tag fresh"); ce != nil {
			ce.Write(zap.String("repository", t.repo), zap.String("tag", tag), zap.String("digest", rec.Digest.String()))
		}
		return m.manifestByDigest(ctx, t, rec.Digest)
	}
	nkey := negativeKeyOf(t, tag, accept)
	if err := m.rememberedMissing(nkey); err != nil {
		return manifestContent{}, err
	}
	key := access.KeyOf(t.who, tagKey{registry: t.registry, repo: t.repo, tag: tag, accept: strings.Join(accept, ","), confirm: confirm})
	res, err := m.tagFlight.Do(ctx, key, func(ctx context.Context) (resolvedTag, error) {
		// A flight that ended just before this one began may have settled
		// the tag: use what it learned rather than ask again.
		if err := m.rememberedMissing(nkey); err != nil {
			return resolvedTag{}, err
		}
		rec, known, fresh := m.tagRecord(t, tag, clientAccept)
		if fresh && !confirm {
			return resolvedTag{content: manifestContent{digest: rec.Digest, mediaType: rec.MediaType}}, nil
		}
		if known {
			return m.revalidateTag(ctx, t, tag, accept, rec, canonical)
		}
		if canonical {
			return m.fetchTagOnce(ctx, t, tag, accept, clientAccept)
		}
		mc, err := m.fetchManifest(ctx, t, tag, accept, "")
		if err != nil {
			return resolvedTag{}, err
		}
		if canonical {
			m.recordTag(t, tag, mc.digest, mc.mediaType, int64(len(mc.data)))
		}
		return resolvedTag{content: mc}, nil
	})
	if err != nil {
		return manifestContent{}, err
	}
	if res.content.data != nil {
		return res.content, nil
	}
	if res.stale {
		ctx = withUpstreamDown(ctx)
	}
	mc, err := m.manifestByDigest(ctx, t, res.content.digest)
	if res.stale && mc.source == sourceCache {
		mc.source = sourceStale
	}
	return mc, err
}

// revalidateTag asks the upstream whether a stale tag still points at the
// cached digest. When the upstream cannot tell (unreachable, timing out,
// 5xx, 429, or a moved tag whose new manifest cannot be fetched, the pull
// budget holding back that GET included), the cached digest is served
// stale, within the stale_if_error limit, and counted.
func (m *Mirror) revalidateTag(ctx context.Context, t target, tag string, accept []string, rec cache.Tag, canonical bool) (resolvedTag, error) {
	res, err := m.revalidate(ctx, t, tag, accept, rec, canonical)
	if err == nil {
		m.staleLog.End()
		return res, nil
	}
	withinLimit := m.cfg.StaleIfError <= 0 || m.now().Sub(rec.FetchedAt) < m.cfg.TagTTL+m.cfg.StaleIfError
	if !staleAllowed(err) || !withinLimit || mustConfirm(ctx) {
		return resolvedTag{}, err
	}
	m.stats.staleServes.Add(1)
	fields := []zap.Field{zap.String("upstream", t.registry), zap.String("repository", t.repo),
		zap.String("tag", tag), zap.String("digest", rec.Digest.String()), zap.Error(err)}
	if errors.Is(err, upstream.ErrBudgetHeld) {
		// The hold itself is logged once per exhaustion of the budget.
		if ce := m.log.Check(zapcore.DebugLevel, "serving stale tag: the pull budget holds back its new manifest"); ce != nil {
			ce.Write(fields...)
		}
	} else {
		m.staleLog.Event(fields...)
	}
	return resolvedTag{content: manifestContent{digest: rec.Digest, mediaType: rec.MediaType}, stale: true}, nil
}

// revalidate asks the upstream with a HEAD (which Docker Hub does not count
// against the pull limit) which digest a tag has now, and fetches the
// manifest when it moved.
func (m *Mirror) revalidate(ctx context.Context, t target, tag string, accept []string, rec cache.Tag, canonical bool) (resolvedTag, error) {
	resp, err := m.upstreamDo(ctx, t, upstream.Request{
		Method: http.MethodHead, Repository: t.repo, Path: "manifests/" + tag,
		Header: http.Header{"Accept": {oci.AcceptHeader(accept)}},
	})
	m.noteAccess(t, err)
	if err != nil {
		m.rememberMissing(negativeKeyOf(t, tag, accept), err)
		return resolvedTag{}, fmt.Errorf("revalidating tag %s:%s: %w", t.repo, tag, err)
	}
	_ = resp.Body.Close()
	current, perr := digest.Parse(resp.Header.Get(oci.ContentDigestHeader))
	if perr != nil {
		// The upstream does not say which digest the tag has: fetch it.
		mc, err := m.fetchManifest(ctx, t, tag, accept, "")
		if err != nil {
			return resolvedTag{}, err
		}
		if canonical {
			m.recordTag(t, tag, mc.digest, mc.mediaType, int64(len(mc.data)))
		}
		return resolvedTag{content: mc}, nil
	}
	mediaType := contentMediaType(resp.Header.Get("Content-Type"))
	if current == rec.Digest {
		if canonical {
			m.recordTag(t, tag, rec.Digest, rec.MediaType, rec.Size)
		}
		return resolvedTag{content: manifestContent{digest: rec.Digest, mediaType: rec.MediaType}}, nil
	}
	// The tag moved: the new manifest is addressed by its digest (perhaps
	// already cached), then the record follows it.
	mc, err := m.manifestByDigest(ctx, t, current)
	if err != nil {
		return resolvedTag{}, err
	}
	if mc.mediaType == "" {
		mc.mediaType = mediaType
	}
	if canonical {
		m.recordTag(t, tag, mc.digest, mc.mediaType, int64(len(mc.data)))
	}
	return resolvedTag{content: mc}, nil
}

// recordTag stores what a tag points at now. A failure to record costs
// only a later revalidation, so it is logged, not returned.
func (m *Mirror) recordTag(t target, tag string, d digest.Digest, mediaType string, size int64) {
	err := m.records.SetTag(t.registry, t.repo, tag, cache.Tag{Digest: d, MediaType: mediaType, Size: size, FetchedAt: m.now()})
	if err != nil {
		m.log.Error("recording tag", zap.String("upstream", t.registry), zap.String("repository", t.repo),
			zap.String("tag", tag), zap.Error(err))
	}
}

// fetchManifest GETs a manifest by tag or digest from the upstream, checks
// its size, JSON and digest (want when fetched by digest, the upstream's
// Docker-Content-Digest otherwise) and stores it. The GET is not sent while
// the upstream's pull budget holds it back (an error wrapping
// upstream.ErrBudgetHeld), and a 404 is remembered for the negative TTL.
func (m *Mirror) fetchManifest(ctx context.Context, t target, ref string, accept []string, want digest.Digest) (manifestContent, error) {
	req := upstream.Request{
		Method: http.MethodGet, Repository: t.repo, Path: "manifests/" + ref,
		Header: http.Header{"Accept": {oci.AcceptHeader(accept)}},
	}
	// A manifest GET is what Docker Hub counts against the pull limit.
	err := t.mayGet(ctx, req)
	if err == nil {
		var resp *http.Response
		resp, err = m.upstreamDo(ctx, t, req)
		m.noteAccess(t, err)
		if err == nil {
			defer resp.Body.Close()
			return m.readManifest(resp, t, ref, want)
		}
	}
	m.noteHeld(t, ref, err)
	m.rememberMissing(negativeKeyOf(t, ref, accept), err)
	return manifestContent{}, fmt.Errorf("fetching manifest %s:%s: %w", t.repo, ref, err)
}

// readManifest reads, checks and stores the manifest of a successful
// answer to a GET of ref (see fetchManifest).
func (m *Mirror) readManifest(resp *http.Response, t target, ref string, want digest.Digest) (manifestContent, error) {
	if resp.StatusCode != http.StatusOK {
		return manifestContent{}, badUpstream("manifest %s:%s answered status %d", t.repo, ref, resp.StatusCode)
	}
	if resp.ContentLength > MaxManifestSize {
		return manifestContent{}, badUpstream("manifest %s:%s is %d bytes, more than the %d allowed", t.repo, ref, resp.ContentLength, MaxManifestSize)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return manifestContent{}, fmt.Errorf("reading manifest %s:%s: %w", t.repo, ref, err)
	}
	if len(data) > MaxManifestSize {
		return manifestContent{}, badUpstream("manifest %s:%s is more than the %d bytes allowed", t.repo, ref, MaxManifestSize)
	}
	if resp.ContentLength >= 0 && int64(len(data)) != resp.ContentLength {
		return manifestContent{}, badUpstream("manifest %s:%s: got %d bytes of %d", t.repo, ref, len(data), resp.ContentLength)
	}
	if !json.Valid(data) {
		return manifestContent{}, badUpstream("manifest %s:%s is not valid JSON", t.repo, ref)
	}
	d := want
	if d == "" {
		d = digest.FromBytes(data)
		if claimed, perr := digest.Parse(resp.Header.Get(oci.ContentDigestHeader)); perr == nil && claimed.Algorithm().Available() {
			d = claimed
		}
	}
	if d.Algorithm().FromBytes(data) != d {
		return manifestContent{}, badUpstream("manifest %s:%s does not match its digest %s", t.repo, ref, d)
	}
	mediaType := contentMediaType(resp.Header.Get("Content-Type"))
	if !isManifestMediaType(mediaType) {
		if detected := oci.DetectMediaType(data); detected != "" {
			mediaType = detected
		}
	}
	// Linked before it is stored: once visible, it is visible under this
	// repository.
	m.link(t, d)
	if err := m.store.Put(d, mediaType, data); err != nil {
		// Serve it anyway: a full or failing disk must not fail pulls. The
		// cache logs a full disk once, at Error, when it happens.
		level := zapcore.ErrorLevel
		if errors.Is(err, cache.ErrUnwritable) {
			level = zapcore.DebugLevel
		}
		if ce := m.log.Check(level, "storing manifest"); ce != nil {
			ce.Write(zap.String("digest", d.String()), zap.Error(err))
		}
	}
	if ce := m.log.Check(zapcore.DebugLevel, "manifest fetched"); ce != nil {
		ce.Write(zap.String("upstream", t.registry), zap.String("repository", t.repo),
			zap.String("reference", ref), zap.String("digest", d.String()), zap.Int("bytes", len(data)))
	}
	return manifestContent{digest: d, mediaType: mediaType, data: data, source: sourceUpstream}, nil
}

// upstreamAccept is the Accept list sent upstream for a client's Accept
// header: the client's own media types, or every manifest type regcache
// knows when the client named none or a wildcard.
func upstreamAccept(clientAccept []string) []string {
	types := oci.NormalizeAccept(clientAccept)
	if len(types) == 0 || slices.ContainsFunc(types, func(s string) bool { return strings.HasSuffix(s, "/*") }) {
		// A wildcard stands for every manifest type the client does not
		// refuse (index;q=0, */* refuses the index).
		var out []string
		for _, mt := range oci.ManifestMediaTypes {
			if oci.Accepts(clientAccept, mt) {
				out = append(out, mt)
			}
		}
		return out
	}
	return types
}

// digestAccept is the Accept list for manifests fetched by digest.
var digestAccept = append(slices.Clone(oci.ManifestMediaTypes), oci.MediaTypeDockerSchema1Signed, oci.MediaTypeDockerSchema1)

// coversAllManifestTypes reports whether accept names every manifest media
// type regcache asks for by default.
func coversAllManifestTypes(accept []string) bool {
	for _, mt := range oci.ManifestMediaTypes {
		if !slices.Contains(accept, mt) {
			return false
		}
	}
	return true
}

// contentMediaType returns the media type of a Content-Type header without
// its parameters.
func contentMediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}

// isManifestMediaType reports whether mt is one of the manifest media types.
func isManifestMediaType(mt string) bool {
	switch mt {
	case oci.MediaTypeDockerManifest, oci.MediaTypeDockerManifestList, oci.MediaTypeOCIManifest,
		oci.MediaTypeOCIIndex, oci.MediaTypeDockerSchema1, oci.MediaTypeDockerSchema1Signed:
		return true
	}
	return false
}
