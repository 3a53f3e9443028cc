package integration

import (
	"testing"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestFillConnections caps each connection at 4 MB/s and lets the mirror
// fill a 64 MiB blob over 4 connections: the hub sees several ranges of
// the blob under way at once, the blob's bytes cross the link about once,
// and the blob arrives whole.
func TestFillConnections(t *testing.T) {
	const size = 64 << 20
	layer, _, err := hub.PushLargeBlobImage("library/segments", "1", size, 137)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "fill_connections 4"})
	setFaults(t, hub, hubtest.Fault{Kind: hubtest.FaultConnBandwidth, Target: hubtest.TargetBlob, Digest: layer, BytesPerSecond: 4 << 20})
	hub.Counters.Reset()
	m.getBlob(t, "/v2/segments/blobs/"+layer, layer, size)
	tr := hub.Counters.Blob(layer)
	wantMovedAtMost(t, "segmented fill", tr, size*11/10)
	if tr.Peak < 2 || tr.Ranges < 2 {
		t.Errorf("segmented fill: %s; want several ranges under way at once", tr)
	}
}
