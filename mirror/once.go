package mirror

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// fetchTagOnce fetches the manifest of a tag no node knows, once across
// the nodes sharing the cache: a node that finds another node fetching it
// waits for that node's tag record and answers from it. With nothing
// shared it is a plain fetch. The client accepts every manifest type
// (canonical), so the record answers it.
func (m *Mirror) fetchTagOnce(ctx context.Context, t target, tag string, accept, clientAccept []string) (resolvedTag, error) {
	var mc manifestContent
	ran := false
	err := m.peers.Once(ctx, "manifest "+t.registry+"/"+t.repo+":"+tag,
		func() bool {
			_, _, fresh := m.tagRecord(t, tag, clientAccept)
			return fresh
		},
		func() error {
			ran = true
			var err error
			mc, err = m.fetchManifest(ctx, t, tag, accept, "")
			if err == nil {
				m.recordTag(t, tag, mc.digest, mc.mediaType, int64(len(mc.data)))
			}
			return err
		})
	if err != nil || ran {
		return resolvedTag{content: mc}, err
	}
	rec, _, _ := m.tagRecord(t, tag, clientAccept)
	return resolvedTag{content: manifestContent{digest: rec.Digest, mediaType: rec.MediaType}}, nil
}

// fetchDigestOnce fetches a manifest by digest once across the nodes
// sharing the cache: a node that finds another node fetching it waits
// until the cache holds the manifest and reads it from there.
func (m *Mirror) fetchDigestOnce(ctx context.Context, t target, d digest.Digest) (manifestContent, error) {
	var mc manifestContent
	ran := false
	err := m.peers.Once(ctx, "manifest "+d.String(),
		func() bool {
			_, err := m.peers.StatElsewhere(d)
			return err == nil
		},
		func() error {
			ran = true
			var err error
			mc, err = m.fetchManifest(ctx, t, d.String(), digestAccept, d)
			return err
		})
	if err != nil || ran {
		return mc, err
	}
	// Fetched with another client's credentials: cachedManifest serves it
	// to this client only if the upstream lets it pull the repository.
	if mc, found, err := m.cachedManifest(ctx, t, d); found {
		return mc, err
	}
	// Held as something else, or unreadable now: fetch it here.
	return m.fetchManifest(ctx, t, d.String(), digestAccept, d)
}
