package integration

import (
	"fmt"
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

// TestSlowRangeFetchedAgain caps each connection at 4 MB/s so that a
// 24 MiB blob is filled over 4 connections, and slows the response of one
// range (the one from byte 16 MiB on) to 64 KB/s: far slower than its
// siblings, that range is dropped and fetched again from where it stopped,
// over a new connection, instead of holding the fill for minutes. The
// blob arrives whole, its bytes crossing the link about once.
func TestSlowRangeFetchedAgain(t *testing.T) {
	const size = 24 << 20
	layer, _, err := hub.PushLargeBlobImage("library/slowrange", "1", size, 140)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "fill_connections 4\n\t\tfill_split_size 4MiB"})
	setFaults(t, hub,
		hubtest.Fault{Kind: hubtest.FaultConnBandwidth, Target: hubtest.TargetBlob, Digest: layer, BytesPerSecond: 4 << 20},
		hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, Digest: layer, BytesPerSecond: 64 << 10, RangeFrom: 16 << 20, Count: 1})
	hub.Counters.Reset()
	m.getBlob(t, "/v2/slowrange/blobs/"+layer, layer, size)
	tr := hub.Counters.Blob(layer)
	wantMovedAtMost(t, "fill with a slow range", tr, size*11/10)
	// The slow range, and its rest asked for again from a later byte.
	var slow, again int64 = -1, -1
	for _, v := range hub.Counters.CDNRanges(layer) {
		var first, last int64
		if n, _ := fmt.Sscanf(v, "bytes=%d-%d", &first, &last); n != 2 || last != size-1 || first < 16<<20 {
			continue
		}
		if slow < 0 {
			slow = first
		} else if first > slow {
			again = first
		}
	}
	if slow < 0 || again < 0 {
		t.Errorf("ranges asked for: %q; want the slow range from byte %d and its rest asked for again", hub.Counters.CDNRanges(layer), int64(16<<20))
	}
}
