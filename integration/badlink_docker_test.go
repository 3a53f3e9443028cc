package integration

import (
	"fmt"
	"testing"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestDockerPullThroughDrops is the first pull of an office on a bad link:
// a Docker daemon with the mirror in registry-mirrors pulls an image whose
// 100 MiB layer the CDN cuts after every 32 MiB of each transfer. The pull
// succeeds through the mirror (without a network the daemon cannot fall
// back to Docker Hub) with the pushed digest, and the layer's bytes cross
// the link at most 1.1 times.
func TestDockerPullThroughDrops(t *testing.T) {
	want, layer := pushLayerImage(t, "library/dropped", 100<<20)
	m := startMirror(t, siteOptions{})
	d := startDockerd(t, fmt.Sprintf(`{
  "registry-mirrors": ["http://%s"],
  "insecure-registries": [%q]
}`, m.Host, m.Host))
	setFaults(t, hub, hubtest.Fault{Kind: hubtest.FaultCut, Target: hubtest.TargetBlob, Digest: layer.Digest.String(), After: 32 << 20})
	hub.Counters.Reset()
	d.docker(t, "pull", "dropped")
	if got := d.repoDigest(t, "dropped", "dropped"); got != want {
		t.Errorf("pull through drops: RepoDigests digest %s, want %s", got, want)
	}
	tr := hub.Counters.Blob(layer.Digest.String())
	t.Logf("the %d-byte layer through drops: %s", layer.Size, tr)
	wantMovedAtMost(t, "docker pull through drops", tr, layer.Size*11/10)
	if tr.Ranges == 0 {
		t.Errorf("docker pull through drops: %s; want transfers continued with Range", tr)
	}
}
