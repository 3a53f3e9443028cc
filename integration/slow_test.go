package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestSlowUpstream injects latency and bandwidth faults: a manifest answer
// slower than response_timeout makes the mirror serve the stale tag (and
// 504 when nothing is cached); a slow body that keeps moving completes; a
// body that stalls longer than stall_timeout is dropped and continued with
// a Range from the byte it got to, so the client gets the whole blob.
func TestSlowUpstream(t *testing.T) {
	_, want, err := hub.PushImage("library/slow", "1", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	layer, _, err := hub.PushLargeBlobImage("library/slowblob", "1", 512<<10, 31)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "tag_ttl 1ns\n\t\tresponse_timeout 300ms\n\t\tstall_timeout 300ms"})
	pullImage(t, m.Host+"/slow:1")
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })

	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultLatency, Target: hubtest.TargetManifest, Delay: 2 * time.Second})
	resp := m.do(t, http.MethodGet, "/v2/slow/manifests/1", "Accept: application/vnd.docker.distribution.manifest.v2+json")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want {
		t.Errorf("tag behind a slow upstream: %d %s, want the stale %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), want)
	}
	resp = m.do(t, http.MethodGet, "/v2/slow/manifests/never-cached")
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("uncached tag behind a slow upstream: status %d, want 504", resp.StatusCode)
	}

	// 1 MiB/s: half a second for the blob, with bytes every 50 ms.
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 1 << 20, Count: 1})
	resp = m.do(t, http.MethodGet, "/v2/slowblob/blobs/"+layer)
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if err != nil || got != layer {
		t.Errorf("slow but moving body: %s, %d bytes, %v; want %s", got, n, err, layer)
	}

	// A stall: one byte a second against a 300 ms stall timeout.
	stalled, _, err := hub.PushLargeBlobImage("library/stalled", "1", 64<<10, 32)
	if err != nil {
		t.Fatal(err)
	}
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 1, Count: 1})
	hub.Counters.Reset()
	resp = m.do(t, http.MethodGet, "/v2/stalled/blobs/"+stalled)
	got, _, err = hashBody(resp.Body)
	resp.Body.Close()
	if err != nil || got != stalled {
		t.Errorf("a stalled transfer: %s, %v; want %s", got, err, stalled)
	}
	wantCount(t, "CDN GETs: the stalled one and its continuation", hub.Counters.CDNGET.Load(), 2)
}
