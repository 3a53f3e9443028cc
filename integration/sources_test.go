package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/regcache/regcache/integration/hubtest"
)

// slowBesideGood starts a second hub holding the same large-blob image as
// the shared one, and caps every connection to the shared hub's CDN for
// that blob at 256 KB/s: a slow source beside a good one. It returns the
// good hub and the blob's digest.
func slowBesideGood(t *testing.T, repo string, size, seed int64) (*hubtest.Hub, string) {
	t.Helper()
	good, err := hubtest.Start(hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = good.Close() })
	layer, _, err := hub.PushLargeBlobImage(repo, "1", size, seed)
	if err != nil {
		t.Fatal(err)
	}
	if again, _, err := good.PushLargeBlobImage(repo, "1", size, seed); err != nil || again != layer {
		t.Fatalf("seeding the second hub: %s, %v; want %s", again, err, layer)
	}
	setFaults(t, hub, hubtest.Fault{Kind: hubtest.FaultConnBandwidth, Target: hubtest.TargetBlob, Digest: layer, BytesPerSecond: 256 << 10})
	return good, layer
}

// TestSlowEndpointBesideGood lists a slow endpoint (256 KB/s per
// connection) before a good one serving the same blob. The fill replaces
// the slow source: the slow endpoint sends less than half the blob, and
// the blob arrives whole.
func TestSlowEndpointBesideGood(t *testing.T) {
	const size = 16 << 20
	good, layer := slowBesideGood(t, "library/twosources", size, 135)
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io {\n\t\t\turl %s\n\t\t\turl %s\n\t\t}", hub.URL, good.URL)})
	hub.Counters.Reset()
	m.getBlob(t, "/v2/twosources/blobs/"+layer, layer, size)
	slow, fast := hub.Counters.Blob(layer), good.Counters.Blob(layer)
	if slow.Bytes >= size/2 || fast.Bytes == 0 {
		t.Errorf("slow endpoint: %s; good endpoint: %s; want most bytes from the good one", slow, fast)
	}
	wantMovedAtMost(t, "both endpoints", hubtest.BlobTraffic{Bytes: slow.Bytes + fast.Bytes}, size*11/10+slow.Bytes)
}

// TestSlowUpstreamDoesNotHoldOthers: a client of one upstream starts the
// fill of a blob from a slow upstream; a client of another upstream that
// serves the same digest gets it while the slow one has sent only a part,
// and the first client gets it too.
func TestSlowUpstreamDoesNotHoldOthers(t *testing.T) {
	const size = 16 << 20
	good, layer := slowBesideGood(t, "library/shared", size, 136)
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io %s\n\t\tupstream quay.io %s", hub.URL, good.URL)})
	hub.Counters.Reset()
	first := make(chan error, 1)
	go func() { first <- m.fetchBlob("/v2/shared/blobs/"+layer, layer, size) }()
	deadline := time.Now().Add(30 * time.Second)
	for hub.Counters.Blob(layer).Bytes == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the fill from the slow upstream never started: %s", hub.Counters.Blob(layer))
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.getBlob(t, "/v2/quay.io/library/shared/blobs/"+layer, layer, size)
	if slow := hub.Counters.Blob(layer); slow.Bytes >= size/2 {
		t.Errorf("the client of the good upstream finished after the slow one sent %s", slow)
	}
	hub.SetFault(hubtest.Fault{}) // the first client need not wait for the slow pace
	if err := <-first; err != nil {
		t.Errorf("the client of the slow upstream: %v", err)
	}
}
