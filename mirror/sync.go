package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

// maxTagPages bounds the pages of one tag listing (registries that
// paginate send a Link to the next page).
const maxTagPages = 100

// confirmKey marks the requests of a sync, which ask the upstream about
// every tag even within the tag TTL and take no stale answer.
type confirmKey struct{}

// mustConfirm reports whether ctx is that of a sync's request.
func mustConfirm(ctx context.Context) bool {
	v, _ := ctx.Value(confirmKey{}).(bool)
	return v
}

// ListTags lists the tags of a repository (docker.io/library/alpine,
// ghcr.io/owner/app) at its upstream, through the mirror's own handling of
// a tag list request (the policy's rules included): one upstream request,
// more only when the upstream paginates. A failed request is a
// *PullError.
func (m *Mirror) ListTags(ctx context.Context, repository string) ([]string, error) {
	ref, err := ParseImageRef(repository, m.defaultName, true)
	if err != nil {
		return nil, err
	}
	t, err := m.refTarget(ref)
	if err != nil {
		return nil, err
	}
	if err := m.checkPolicy(t, oci.KindTags, ""); err != nil {
		m.stats.requests.count(oci.KindTags, sourceUpstream, true, 0)
		return nil, fmt.Errorf("listing the tags of %s: %w", ref, pullError(ctx, t, oci.KindTags, "", err))
	}
	var tags []string
	q := url.Values{}
	for range maxTagPages {
		page, next, err := m.tagPage(ctx, t, q)
		if err != nil {
			return nil, fmt.Errorf("listing the tags of %s: %w", ref, pullError(ctx, t, oci.KindTags, "", err))
		}
		tags = append(tags, page...)
		if next == nil {
			return tags, nil
		}
		q = next
	}
	return tags, fmt.Errorf("listing the tags of %s: more than %d pages", ref, maxTagPages)
}

// tagPage returns one page of t's tags as the policy lets clients see
// them, and the query (n and last) of the next page; nil when it is the
// last.
func (m *Mirror) tagPage(ctx context.Context, t target, q url.Values) (tags []string, next url.Values, err error) {
	failed := true
	var body []byte
	defer func() {
		// Counted as a client's tag list request would be.
		m.stats.requests.count(oci.KindTags, sourceUpstream, failed, int64(len(body)))
	}()
	resp, err := m.tagList(ctx, t, q)
	if err != nil {
		return nil, nil, err
	}
	link := resp.Header.Get("Link")
	if body, err = readList(resp); err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, badUpstream("tag list of %s answered status %d", t.repo, resp.StatusCode)
	}
	failed = false
	var page struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(m.filterTags(t, body), &page); err != nil {
		return nil, nil, badUpstream("the tag list of %s is not a tag list: %v", t.repo, err)
	}
	start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
	if start < 0 || end < start || !strings.Contains(link[end:], `rel="next"`) {
		return page.Tags, nil, nil
	}
	u, err := url.Parse(link[start+1 : end])
	if err != nil {
		return nil, nil, badUpstream("the tag list of %s links to %q: %v", t.repo, link, err)
	}
	next = url.Values{}
	for _, k := range []string{"n", "last"} {
		if v := u.Query().Get(k); v != "" {
			next.Set(k, v)
		}
	}
	return page.Tags, next, nil
}

// Sync brings an image into the cache the way Warm does, but asks the
// upstream about its tag even while the cached answer is within the tag
// TTL (with a HEAD, which Docker Hub does not count against its pull
// limit) and never settles for a stale answer: an unchanged image costs
// that HEAD and nothing else, a moved or new one the GETs of what is not
// cached yet. Everything a client pull is subject to applies to it. It
// returns the digests of the image's manifests and blobs for the
// platforms, all cached, for pinning.
func (m *Mirror) Sync(ctx context.Context, image string, platforms []string, progress func(WarmProgress)) ([]digest.Digest, error) {
	return m.pull(context.WithValue(ctx, confirmKey{}, true), image, platforms, progress)
}

// CachedTags returns the tags of a repository the cache has records of,
// without asking the upstream.
func (m *Mirror) CachedTags(repository string) ([]string, error) {
	ref, err := ParseImageRef(repository, m.defaultName, true)
	if err != nil {
		return nil, err
	}
	var tags []string
	err = m.records.EachTag(func(upstream, repo, tag string, _ cache.Tag) bool {
		if upstream == ref.Registry && repo == ref.Repository && !strings.HasPrefix(tag, ":") {
			tags = append(tags, tag)
		}
		return true
	})
	return tags, err
}

// CachedImage returns the digests of the manifests and blobs of an image
// (by tag or digest) that the cache holds, every platform's, without
// asking the upstream or counting as a use.
func (m *Mirror) CachedImage(image string) ([]digest.Digest, error) {
	ref, err := ParseImageRef(image, m.defaultName, false)
	if err != nil {
		return nil, err
	}
	root := ref.Digest
	if root == "" {
		rec, err := m.records.Tag(ref.Registry, ref.Repository, ref.Tag)
		if errors.Is(err, cache.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		root = rec.Digest
	}
	found := m.reachable([]digest.Digest{root})
	out := make([]digest.Digest, 0, len(found))
	for d := range found {
		out = append(out, d)
	}
	return out, nil
}
