package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/regcache/regcache/integration/hubtest"
)

// setFaults makes faults the hub's active faults for the rest of the test.
func setFaults(t *testing.T, h *hubtest.Hub, faults ...hubtest.Fault) {
	t.Helper()
	h.SetFault(hubtest.Fault{})
	for _, f := range faults {
		h.AddFault(f)
	}
	t.Cleanup(func() { h.SetFault(hubtest.Fault{}) })
}

// wantMovedAtMost fails the test when more than limit bytes of a blob
// crossed the link.
func wantMovedAtMost(t *testing.T, what string, tr hubtest.BlobTraffic, limit int64) {
	t.Helper()
	if tr.Bytes > limit {
		t.Errorf("%s: %s crossed the link, want at most %d bytes", what, tr, limit)
	}
}

// getBlob GETs a blob through the mirror and fails the test unless the
// answer is the whole blob with its digest.
func (s *mirrorSite) getBlob(t *testing.T, path, digest string, size int64) {
	t.Helper()
	if err := s.fetchBlob(path, digest, size); err != nil {
		t.Fatal(err)
	}
}

// fetchBlob GETs a blob through the mirror and returns an error unless the
// answer is the whole blob with its digest. It may run on any goroutine.
func (s *mirrorSite) fetchBlob(path, digest string, size int64) error {
	resp, err := http.Get(s.URL + path)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || got != digest || n != size {
		return fmt.Errorf("GET %s: status %d, %s (%d bytes), %v; want %s (%d bytes)", path, resp.StatusCode, got, n, err, digest, size)
	}
	return nil
}

// blobsOf returns the config and layer descriptors of an image.
func blobsOf(t *testing.T, img v1.Image) []v1.Descriptor {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return append([]v1.Descriptor{m.Config}, m.Layers...)
}

// pushLayerImage pushes to repo:latest an image of one gzipped tar layer
// holding a file of size random bytes, and returns the manifest's digest
// and the layer's descriptor.
func pushLayerImage(t *testing.T, repo string, size int64) (string, v1.Descriptor) {
	t.Helper()
	img, manifest, err := hub.PushImage(repo, "latest", 1, size, false)
	if err != nil {
		t.Fatal(err)
	}
	return manifest, blobsOf(t, img)[1]
}

// TestDropsEvery32MiB cuts every transfer of a 100 MiB layer after
// 32 MiB, Range answers included, as a bad link does. A pull with
// go-containerregistry through the mirror succeeds, with every digest
// verified, the layer's bytes crossing the link at most 1.1 times, in
// requests that continue with Range. A second pull costs no upstream
// request.
func TestDropsEvery32MiB(t *testing.T) {
	_, layer := pushLayerImage(t, "library/drops", 100<<20)
	m := startMirror(t, siteOptions{})
	setFaults(t, hub, hubtest.Fault{Kind: hubtest.FaultCut, Target: hubtest.TargetBlob, Digest: layer.Digest.String(), After: 32 << 20})
	hub.Counters.Reset()
	pullImage(t, m.Host+"/drops")
	tr := hub.Counters.Blob(layer.Digest.String())
	wantMovedAtMost(t, "pull through drops", tr, layer.Size*11/10)
	if tr.Bytes < layer.Size || tr.Ranges < 3 {
		t.Errorf("pull through drops: %s; want the layer's %d bytes in at least 4 transfers, 3 of them continued with Range", tr, layer.Size)
	}
	hub.Counters.Reset()
	pullImage(t, m.Host+"/drops")
	wantCount(t, "second pull: upstream requests", hub.Counters.Upstream(), 0)
}

// TestRangeMisbehaviour cuts the first transfer of a blob, then has the
// origin misbehave on every Range request: it ignores Range and answers
// 200 with the whole body, as an origin without range support does, or
// it answers 206 for another range than the one asked. The mirror never
// splices wrong bytes in: it starts over cleanly and serves the right
// blob, and the second GET is a cache hit. Besides the cut part and one
// whole blob, the link carries what the hub had written into the loopback
// socket buffers (a few MiB) of an answer the mirror refused by its
// headers.
func TestRangeMisbehaviour(t *testing.T) {
	const size, cut = 24 << 20, 8 << 20
	tests := []struct {
		name  string
		fault hubtest.Fault
		seed  int64
	}{
		{"ignores Range", hubtest.Fault{Kind: hubtest.FaultIgnoreRange}, 132},
		{"wrong Content-Range", hubtest.Fault{Kind: hubtest.FaultWrongRange, Shift: 1 << 20}, 133},
	}
	m := startMirror(t, siteOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("library/badrange%d", tc.seed)
			layer, _, err := hub.PushLargeBlobImage(repo, "1", size, tc.seed)
			if err != nil {
				t.Fatal(err)
			}
			tc.fault.Target, tc.fault.Digest = hubtest.TargetBlob, layer
			setFaults(t, hub, hubtest.Fault{Kind: hubtest.FaultCut, Target: hubtest.TargetBlob, Digest: layer, After: cut, Count: 1}, tc.fault)
			hub.Counters.Reset()
			path := fmt.Sprintf("/v2/badrange%d/blobs/%s", tc.seed, layer)
			m.getBlob(t, path, layer, size)
			wantMovedAtMost(t, "blob from an origin that "+tc.name, hub.Counters.Blob(layer), cut+size+size/10+4<<20)
			hub.Counters.Reset()
			m.getBlob(t, path, layer, size)
			wantCount(t, "second GET: upstream requests", hub.Counters.Upstream(), 0)
		})
	}
	checkCacheIntegrity(t, m.Storage)
}

// TestSignedURLExpiresMidFill signs the CDN URLs of a blob for half a
// second while each connection moves 4 MB/s, so every transfer stops when
// its URL expires. The mirror gets new URLs from the front and continues
// where it stopped: the fill succeeds with at most 1.1 times the blob's
// bytes.
func TestSignedURLExpiresMidFill(t *testing.T) {
	const size = 16 << 20
	layer, _, err := hub.PushLargeBlobImage("library/expiring", "1", size, 134)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	setFaults(t, hub,
		hubtest.Fault{Kind: hubtest.FaultExpiry, Target: hubtest.TargetBlob, Digest: layer, Delay: 500 * time.Millisecond},
		hubtest.Fault{Kind: hubtest.FaultConnBandwidth, Target: hubtest.TargetBlob, Digest: layer, BytesPerSecond: 4 << 20})
	hub.Counters.Reset()
	m.getBlob(t, "/v2/expiring/blobs/"+layer, layer, size)
	tr := hub.Counters.Blob(layer)
	wantMovedAtMost(t, "blob behind expiring URLs", tr, size*11/10)
	if hub.Counters.CDNExpired.Load() == 0 || tr.Redirects < 2 {
		t.Errorf("%s, %d expired URLs; want transfers stopped by expiry and new URLs fetched", tr, hub.Counters.CDNExpired.Load())
	}
}

// TestRangeOnColdBlobAnsweredEarly asks for the first 64 KiB of a cold
// 32 MiB blob while each connection to the CDN moves 1 MB/s: the answer
// arrives, correct, while the hub has sent only a part of the blob, and
// the fill goes on until the blob is cached.
func TestRangeOnColdBlobAnsweredEarly(t *testing.T) {
	const size = 32 << 20
	layer, _, err := hub.PushLargeBlobImage("library/lazy", "1", size, 138)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 64<<10)
	if _, err := io.ReadFull(hubtest.SeededBlob(size, 138), want); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	setFaults(t, hub, hubtest.Fault{Kind: hubtest.FaultConnBandwidth, Target: hubtest.TargetBlob, Digest: layer, BytesPerSecond: 1 << 20})
	hub.Counters.Reset()
	resp := m.do(t, http.MethodGet, "/v2/lazy/blobs/"+layer, fmt.Sprintf("Range: bytes=0-%d", len(want)-1))
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	sent := hub.Counters.Blob(layer).Bytes
	if resp.StatusCode != http.StatusPartialContent || err != nil || string(body) != string(want) {
		t.Fatalf("range of a cold blob: status %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
	if sent >= size/2 {
		t.Errorf("the range was answered after the hub sent %d of %d bytes; want it answered early", sent, size)
	}
	hub.SetFault(hubtest.Fault{}) // the rest of the fill at full speed
	deadline := time.Now().Add(60 * time.Second)
	for {
		hub.Counters.Reset()
		resp := m.do(t, http.MethodHead, "/v2/lazy/blobs/"+layer)
		resp.Body.Close()
		if hub.Counters.Upstream() == 0 && resp.StatusCode == http.StatusOK {
			break // answered from the cache
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fill never completed: HEAD %d, %s", resp.StatusCode, hub.Counters)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.getBlob(t, "/v2/lazy/blobs/"+layer, layer, size)
}
