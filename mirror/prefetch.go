package mirror

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/oci"
)

// prefetch starts the fills of the config and layers of an image manifest
// that the mirror just fetched from the upstream for a client, so that the
// blobs the client asks for next are already on their way. The fills run
// with that client's credentials and record its access as a client's own
// blob fill does. An index prefetches nothing (the client picks a
// platform first), and prefetch never fetches manifests: on Docker Hub
// manifest GETs spend the pull budget, blob GETs do not. The cache starts
// a prefetch only while enough download slots stay free for the fills
// clients wait for.
func (m *Mirror) prefetch(t target, mc manifestContent) {
	if m.cfg.DisablePrefetch {
		return
	}
	children, blobs, _, err := oci.ManifestRefs(mc.data)
	if err != nil || len(children) > 0 {
		return
	}
	started := 0
	for _, desc := range blobs {
		d, err := oci.ParseDigest(desc.Digest)
		if err != nil {
			continue
		}
		if m.store.Prefetch(d, m.blobFetch(t, d)) {
			started++
		}
	}
	if started > 0 {
		if ce := m.log.Check(zapcore.DebugLevel, "prefetching blobs of a manifest"); ce != nil {
			ce.Write(zap.String("upstream", t.registry), zap.String("repository", t.repo),
				zap.String("digest", mc.digest.String()), zap.Int("blobs", started))
		}
	}
}
