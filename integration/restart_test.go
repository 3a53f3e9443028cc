package integration

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestRestartsContinueFill kills Caddy twice in the middle of the fill of a
// 64 MiB blob, each connection to the CDN capped at 8 MB/s: once after a
// third of the blob crossed the link, once after two thirds. Each next
// start continues the partial download, so over the three runs the blob's
// bytes cross the link about once (the bytes in flight at each kill
// aside), and the blob is served whole and correct at the end.
func TestRestartsContinueFill(t *testing.T) {
	const size = 64 << 20
	layer, _, err := hub.PushLargeBlobImage("library/restarted", "1", size, 139)
	if err != nil {
		t.Fatal(err)
	}
	port, storage := freePort(t), filepath.Join(t.TempDir(), "cache")
	cfg := childCaddyfile(port, storage, "")
	setFaults(t, hub, hubtest.Fault{Kind: hubtest.FaultConnBandwidth, Target: hubtest.TargetBlob, Digest: layer, BytesPerSecond: 8 << 20})
	hub.Counters.Reset()
	var moved int64 // bytes of the blob sent by the hub before the last kill
	for run, killAt := range []int64{size / 3, 2 * size / 3} {
		child := startChildCaddy(t, port, cfg)
		checkCacheIntegrity(t, storage)
		go func() {
			resp, err := http.Get(blobURL(port, "library/restarted", layer))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		deadline := time.Now().Add(60 * time.Second)
		for hub.Counters.Blob(layer).Bytes < killAt {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: the fill stalled at %s", run, hub.Counters.Blob(layer))
			}
			time.Sleep(5 * time.Millisecond)
		}
		child.kill(t)
		moved = hub.Counters.Blob(layer).Bytes
	}
	hub.SetFault(hubtest.Fault{})
	before := len(hub.Counters.CDNRanges(layer))
	startChildCaddy(t, port, cfg)
	checkCacheIntegrity(t, storage)
	resp, err := http.Get(blobURL(port, "library/restarted", layer))
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if err != nil || got != layer || n != size {
		t.Fatalf("the blob after two restarts: %s, %d bytes, %v; want %s, %d bytes", got, n, err, layer, size)
	}
	// The continued fill's first request asks for only the bytes before
	// the first range it kept (the fill was split into ranges), not from
	// its prefix to the blob's end, which would push bytes it has into
	// the connection.
	if after := hub.Counters.CDNRanges(layer)[before:]; len(after) == 0 || !boundedRange(after[0], size) {
		t.Errorf("after the last restart the fill asked for %q; want a first range that ends before the blob does", after)
	}
	tr := hub.Counters.Blob(layer)
	// In flight at each kill: what the mirror had received but not yet
	// written, a few MiB at most.
	margin := int64(2*4<<20) + size/20
	if last := tr.Bytes - moved; last > size-moved+margin || tr.Bytes > size+margin {
		t.Errorf("%s crossed the link in all, %d after the last restart, with %d sent before it; want only the missing bytes again (margin %d)",
			tr, last, moved, margin)
	}
}

// boundedRange reports whether a Range header asks for one range that
// starts past the first byte and ends before the last of size bytes.
func boundedRange(v string, size int64) bool {
	var first, last int64
	n, _ := fmt.Sscanf(v, "bytes=%d-%d", &first, &last)
	return n == 2 && first > 0 && last >= first && last < size-1
}
