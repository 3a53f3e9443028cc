package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestBadBlobBodiesNeverEndCleanly injects a corrupted or truncated blob
// body at the CDN: no client may receive it as a complete response, the
// process survives (a multi-range request once crashed it), nothing bad is
// cached, and the next request fetches the blob again and succeeds.
func TestBadBlobBodiesNeverEndCleanly(t *testing.T) {
	m := startMirror(t, siteOptions{})
	tests := []struct {
		name    string
		kind    hubtest.FaultKind
		headers []string
	}{
		{"corrupted byte, whole blob", hubtest.FaultCorrupt, nil},
		{"corrupted byte, open range", hubtest.FaultCorrupt, []string{"Range: bytes=0-"}},
		{"corrupted byte, last bytes", hubtest.FaultCorrupt, []string{"Range: bytes=-10"}},
		{"corrupted byte, multi-range", hubtest.FaultCorrupt, []string{"Range: bytes=0-0,100-199"}},
		{"corrupted byte, conditional", hubtest.FaultCorrupt, []string{`If-None-Match: "x"`}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("library/bad%d", i)
			layer, _, err := hub.PushLargeBlobImage(repo, "latest", 2<<20, int64(100+i))
			if err != nil {
				t.Fatal(err)
			}
			path := fmt.Sprintf("/v2/bad%d/blobs/%s", i, layer)
			hub.SetFault(hubtest.Fault{Kind: tc.kind, Target: hubtest.TargetBlob, Count: 1})
			defer hub.SetFault(hubtest.Fault{})
			req := m.request(t, http.MethodGet, path, tc.headers...)
			// Without keep-alive, net/http cannot silently retry the GET on a
			// new connection when the mirror resets it before any byte.
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := client.Do(req)
			if err == nil {
				got, _, rerr := hashBody(resp.Body)
				resp.Body.Close()
				if rerr == nil && resp.StatusCode < 300 {
					t.Fatalf("a bad body ended cleanly with status %d (digest %s, blob %s)", resp.StatusCode, got, layer)
				}
			}
			hub.SetFault(hubtest.Fault{})
			resp = m.do(t, http.MethodGet, path)
			got, n, err := hashBody(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil || got != layer || n != 2<<20 {
				t.Errorf("refetch after the fault: status %d, %s (%d bytes), %v", resp.StatusCode, got, n, err)
			}
		})
	}
}

// TestTruncatedBlobIsResumed cuts the CDN's first transfer of a blob in
// the middle: the mirror continues it with a Range from the byte it got
// to, and the client receives the whole verified blob in one clean
// response, with the blob's bytes crossing the link once.
func TestTruncatedBlobIsResumed(t *testing.T) {
	m := startMirror(t, siteOptions{})
	const size = 2 << 20
	layer, _, err := hub.PushLargeBlobImage("library/resumed", "latest", size, 200)
	if err != nil {
		t.Fatal(err)
	}
	hub.Counters.Reset()
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultTruncate, Target: hubtest.TargetBlob, Count: 1})
	defer hub.SetFault(hubtest.Fault{})
	resp := m.do(t, http.MethodGet, "/v2/resumed/blobs/"+layer)
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || got != layer || n != size {
		t.Fatalf("a truncated transfer: status %d, %s (%d bytes), %v; want the whole blob", resp.StatusCode, got, n, err)
	}
	wantCount(t, "blob GETs at the CDN (the cut one and its continuation)", hub.Counters.CDNGET.Load(), 2)
	if moved := hub.Counters.CDNBytes.Load(); moved > size*11/10 {
		t.Errorf("the CDN sent %d bytes for a %d-byte blob, want at most 1.1x", moved, size)
	}
}

func TestBlobIsNotServedAsManifest(t *testing.T) {
	layer, _, err := hub.PushLargeBlobImage("library/notmanifest", "latest", 4096, 9)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	resp := m.do(t, http.MethodGet, "/v2/notmanifest/blobs/"+layer)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp = m.do(t, http.MethodGet, "/v2/notmanifest/manifests/"+layer)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a cached blob asked for as a manifest: status %d, want 404", resp.StatusCode)
	}
}

// TestFillBrokenBeforeAnyByteIsResumed: the CDN sends its headers and
// closes before the first body byte; the mirror, which has sent nothing
// yet, asks again and answers the whole blob as if nothing happened.
func TestFillBrokenBeforeAnyByteIsResumed(t *testing.T) {
	layer, _, err := hub.PushLargeBlobImage("library/nobody", "latest", 1<<20, 77)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultNoBody, Target: hubtest.TargetBlob, Count: 1})
	defer hub.SetFault(hubtest.Fault{})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(m.URL + "/v2/nobody/blobs/" + layer)
	if err != nil {
		t.Fatalf("the mirror reset the connection instead of answering: %v", err)
	}
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || got != layer || n != 1<<20 {
		t.Errorf("status %d, %s (%d bytes), %v; want the whole blob", resp.StatusCode, got, n, err)
	}
	wantCount(t, "blob GETs at the CDN (the empty one and the next)", hub.Counters.CDNGET.Load(), 2)
}

// TestOversizeManifestsAreRefused has the upstream answer a manifest GET
// with a body over the 4 MiB limit (announced, chunked, or announced
// absurdly large): the client gets a 502 OCI error, nothing is written to
// the cache, nothing is remembered, and the real manifest is served once
// the upstream behaves. Prefetch is off: the layers of the manifests
// served between the cases would change the cache while it is compared.
func TestOversizeManifestsAreRefused(t *testing.T) {
	m := startMirror(t, siteOptions{block: "prefetch off"})
	tests := []struct {
		name           string
		size, announce int64
	}{
		{"announced, just over the limit", 4<<20 + 1, 4<<20 + 1},
		{"chunked, without a length", 5 << 20, 0},
		{"absurd Content-Length", 1024, 1 << 40},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("library/huge%d", i)
			_, want, err := hub.PushImage(repo, "1", 1, 1024, false)
			if err != nil {
				t.Fatal(err)
			}
			path := fmt.Sprintf("/v2/huge%d/manifests/1", i)
			before := cacheFiles(t, m.Storage)
			hub.SetFault(hubtest.Fault{Kind: hubtest.FaultOversize, Target: hubtest.TargetManifest, Count: 1, Size: tc.size, Announce: tc.announce})
			defer hub.SetFault(hubtest.Fault{})
			resp := m.do(t, http.MethodGet, path)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"UNAVAILABLE"`) {
				t.Errorf("oversize manifest: %d %.200s; want 502 with an OCI error", resp.StatusCode, body)
			}
			if after := cacheFiles(t, m.Storage); after != before {
				t.Errorf("the cache changed: %s, before %s", after, before)
			}
			hub.SetFault(hubtest.Fault{})
			resp = m.do(t, http.MethodGet, path)
			resp.Body.Close()
			if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != http.StatusOK || got != want {
				t.Errorf("after the fault: %d, digest %s; want 200, %s", resp.StatusCode, got, want)
			}
		})
	}
}
