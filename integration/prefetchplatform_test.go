package integration

import (
	"net/http"
	"testing"
)

// TestPrefetchOfPlatformAfterIndex: a client GETs a multi-platform index,
// then the linux/amd64 manifest it names. The platform manifest prefetches
// its own config and layers, and the other platform's blobs are never
// fetched; prefetch fetches no manifest (Docker Hub counts manifest GETs
// against the pull limit): the hub sees only the client's two.
func TestPrefetchOfPlatformAfterIndex(t *testing.T) {
	idx, _, err := hub.PushIndex("library/prefetchplatform", "1", []string{"linux/amd64", "linux/arm64"}, true)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	manifests, blobs := map[string]string{}, map[string][]string{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		manifests[d.Platform.Architecture] = d.Digest.String()
		blobs[d.Platform.Architecture] = imageBlobs(t, img)
	}
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()
	for _, path := range []string{"/v2/prefetchplatform/manifests/1", "/v2/prefetchplatform/manifests/" + manifests["amd64"]} {
		resp := m.do(t, http.MethodGet, path, "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, resp.StatusCode)
		}
	}
	waitStored(t, m.Storage, blobs["amd64"])
	for _, d := range blobs["arm64"] {
		if tr := hub.Counters.Blob(d); tr.Requests != 0 {
			t.Errorf("linux/arm64 blob %s was fetched: %s", d, tr)
		}
	}
	wantCount(t, "manifest GETs (the index and the platform the client asked for)", hub.Counters.ManifestGET.Load(), 2)
}
