package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestFloodOfColdBlobsIsQueued sends many requests for distinct uncached
// blobs at once to a mirror with max_downloads 2 and a slow upstream: at no
// moment do more than two downloads run (two files in ingest/), and every
// client still gets its blob, complete and verified, once a slot frees.
func TestFloodOfColdBlobsIsQueued(t *testing.T) {
	const blobs, size = 8, 96 << 10
	layers := make([]string, blobs)
	for i := range layers {
		layer, _, err := hub.PushLargeBlobImage(fmt.Sprintf("library/flood%d", i), "1", size, int64(500+i))
		if err != nil {
			t.Fatal(err)
		}
		layers[i] = layer
	}
	m := startMirror(t, siteOptions{block: "max_downloads 2"})
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 256 << 10})
	defer hub.SetFault(hubtest.Fault{})
	hub.Counters.Reset()

	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			entries, _ := os.ReadDir(filepath.Join(m.Storage, "ingest"))
			// Each download is a data file and its sidecar.
			var n int64
			for _, e := range entries {
				if !strings.Contains(e.Name(), ".json") {
					n++
				}
			}
			if n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make([]string, blobs)
	for i, layer := range layers {
		wg.Go(func() {
			resp := m.do(t, http.MethodGet, fmt.Sprintf("/v2/flood%d/blobs/%s", i, layer))
			got, n, err := hashBody(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil || got != layer || n != size {
				errs[i] = fmt.Sprintf("status %d, %s (%d bytes), %v", resp.StatusCode, got, n, err)
			}
		})
	}
	wg.Wait()
	close(done)
	<-sampled
	for i, e := range errs {
		if e != "" {
			t.Errorf("blob %d: %s", i, e)
		}
	}
	if p := peak.Load(); p < 1 || p > 2 {
		t.Errorf("at most %d downloads ran at once (files in ingest/), want 1 or 2", p)
	}
	wantCount(t, "blob GETs at the CDN", hub.Counters.CDNGET.Load(), blobs)
}
