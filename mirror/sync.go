package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
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
// a tag list request: one upstream request, more only when the upstream
// paginates.
func (m *Mirror) ListTags(ctx context.Context, repository string) ([]string, error) {
	ref, err := ParseImageRef(repository, m.defaultName, true)
	if err != nil {
		return nil, err
	}
	if _, ok := m.upstreams[ref.Registry]; !ok {
		return nil, fmt.Errorf("registry %q is not mirrored here", ref.Registry)
	}
	path := "/v2/" + m.pathName(ref) + "/tags/list"
	var tags []string
	for range maxTagPages {
		body, hdr, err := m.internalGet(ctx, path, "application/json", true)
		if err != nil {
			return nil, fmt.Errorf("listing the tags of %s: %w", ref, err)
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("listing the tags of %s: the answer is not a tag list: %w", ref, err)
		}
		tags = append(tags, page.Tags...)
		link := hdr.Get("Link")
		start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
		if start < 0 || end < start || !strings.Contains(link[end:], `rel="next"`) {
			return tags, nil
		}
		path = link[start+1 : end]
	}
	return tags, fmt.Errorf("listing the tags of %s: more than %d pages", ref, maxTagPages)
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
