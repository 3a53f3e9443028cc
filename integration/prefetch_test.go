package integration

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// waitStored waits until every digest is stored in the mirror's cache.
func waitStored(t *testing.T, storage string, digests []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range digests {
		path := filepath.Join(storage, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
		for {
			if _, err := os.Stat(path); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s was never stored", d)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// imageBlobs lists the config and layer digests of img.
func imageBlobs(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blobs := []string{m.Config.Digest.String()}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest.String())
	}
	return blobs
}

// TestManifestPrefetchesItsBlobs fetches an image manifest through the
// mirror: the image's config and layers are downloaded right away, once
// each, and the pull that follows (go-containerregistry) causes no further
// blob GET upstream. An index prefetches nothing, and with prefetch off a
// manifest fetches only itself.
func TestManifestPrefetchesItsBlobs(t *testing.T) {
	img, _, err := hub.PushImage("library/prefetched", "1", 3, 256<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hub.PushIndex("library/prefetchedindex", "1", []string{"linux/amd64", "linux/arm64"}, true); err != nil {
		t.Fatal(err)
	}
	blobs := imageBlobs(t, img)
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()
	accept := "Accept: application/vnd.docker.distribution.manifest.v2+json"
	resp := m.do(t, http.MethodGet, "/v2/prefetched/manifests/1", accept)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: status %d", resp.StatusCode)
	}
	waitStored(t, m.Storage, blobs)
	wantCount(t, "blob GETs at the CDN after the manifest", hub.Counters.CDNGET.Load(), int64(len(blobs)))
	pullImage(t, m.Host+"/prefetched:1")
	wantCount(t, "blob GETs at the CDN after the pull", hub.Counters.CDNGET.Load(), int64(len(blobs)))

	hub.Counters.Reset()
	resp = m.do(t, http.MethodGet, "/v2/prefetchedindex/manifests/1", "Accept: application/vnd.oci.image.index.v1+json")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("index: status %d", resp.StatusCode)
	}
	wantCount(t, "manifest GETs for an index", hub.Counters.ManifestGET.Load(), 1)
	wantCount(t, "blob GETs for an index", hub.Counters.BlobGET.Load(), 0)

	off, _, err := hub.PushImage("library/notprefetched", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	m2 := startMirror(t, siteOptions{block: "prefetch off"})
	hub.Counters.Reset()
	resp = m2.do(t, http.MethodGet, "/v2/notprefetched/manifests/1", accept)
	resp.Body.Close()
	// A blob GET of the client follows, so that a prefetch, had one
	// started, would have had its time.
	resp = m2.do(t, http.MethodGet, "/v2/notprefetched/blobs/"+imageBlobs(t, off)[0])
	resp.Body.Close()
	wantCount(t, "blob GETs with prefetch off", hub.Counters.BlobGET.Load(), 1)
}
