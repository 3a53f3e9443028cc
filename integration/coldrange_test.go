package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestRangeOfAColdBlob asks for ranges of a blob whose fill crawls over a
// slow link, the way lazy-pulling snapshotters do: a range within the
// bytes the fill has (or about to have) is answered from the fill at once,
// a range far beyond them is passed through from the upstream; both
// while the fill goes on, and both hold the blob's bytes.
func TestRangeOfAColdBlob(t *testing.T) {
	const size = 12 << 20
	layer, _, err := hub.PushLargeBlobImage("library/lazy", "1", size, 41)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 2 << 20})
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })
	path := "/v2/lazy/blobs/" + layer
	whole := make(chan []byte, 1)
	go func() {
		resp := m.do(t, http.MethodGet, path)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		whole <- b
	}()
	deadline := time.Now().Add(30 * time.Second)
	for ingestBytes(m.Storage) < 64<<10 {
		if time.Now().After(deadline) {
			t.Fatal("the fill never got going")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stored := filepath.Join(m.Storage, "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))

	rangeOf := func(first, last int64) []byte {
		t.Helper()
		resp := m.do(t, http.MethodGet, path, fmt.Sprintf("Range: bytes=%d-%d", first, last))
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("bytes %d-%d/%d", first, last, size)
		if resp.StatusCode != http.StatusPartialContent || err != nil || int64(len(b)) != last-first+1 ||
			resp.Header.Get("Content-Range") != want {
			t.Fatalf("range %d-%d: status %d, Content-Range %q, %d bytes, %v; want 206 %q",
				first, last, resp.StatusCode, resp.Header.Get("Content-Range"), len(b), err, want)
		}
		if _, err := os.Stat(stored); err == nil {
			t.Fatalf("range %d-%d was answered only once the blob was stored", first, last)
		}
		return b
	}
	head := rangeOf(0, 4095)
	wantCount(t, "CDN GETs for a range the fill has", hub.Counters.CDNGET.Load(), 1)
	tail := rangeOf(size-1000, size-1)
	wantCount(t, "CDN GETs once a far range passed through", hub.Counters.CDNGET.Load(), 2)

	b := <-whole
	if len(b) != size {
		t.Fatalf("the whole blob: %d bytes, want %d", len(b), size)
	}
	if !bytes.Equal(head, b[:4096]) || !bytes.Equal(tail, b[size-1000:]) {
		t.Errorf("the ranges do not hold the blob's bytes")
	}
}

// TestLargeBlobIsFetchedInRanges pulls a blob above fill_split_size over
// a link that caps each connection: the mirror fetches it as
// fill_connections ranges at once, and the client gets it whole and
// verified in one stream.
func TestLargeBlobIsFetchedInRanges(t *testing.T) {
	const size = 16 << 20
	layer, _, err := hub.PushLargeBlobImage("library/split", "1", size, 43)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "fill_connections 4\n\t\tfill_split_size 8MiB"})
	hub.Counters.Reset()
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 8 << 20})
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })
	resp := m.do(t, http.MethodGet, "/v2/split/blobs/"+layer)
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || got != layer || n != size {
		t.Fatalf("status %d, %s (%d bytes), %v; want the whole blob", resp.StatusCode, got, n, err)
	}
	wantCount(t, "CDN GETs: the first range and three more", hub.Counters.CDNGET.Load(), 4)
	wantCount(t, "CDN bytes: each byte once", hub.Counters.CDNBytes.Load(), size)
}
