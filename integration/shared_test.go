package integration

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/regcache/regcache/integration/hubtest"
	"github.com/regcache/regcache/s3tier/s3test"
)

// sharedNode is one regcache node (a child Caddy) of a cache shared
// through a bucket.
type sharedNode struct {
	port    int
	storage string
	config  string
	child   *childCaddy
	// upstream is the node's upstream line of registry_cache.
	upstream string
}

// nodeCaddyfile is the Caddyfile of a node on port with its local tier
// in storage, the shared tier in srv's bucket, and an upstream line.
func nodeCaddyfile(port int, storage string, srv *s3test.Server, leaseTTL, upstream string) string {
	return fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	metrics /metrics
	registry_cache {
		storage %s {
			s3 {
				endpoint %s
				bucket %s
				access_key {env.REGCACHE_TEST_S3_KEY}
				secret_key {env.REGCACHE_TEST_S3_SECRET}
				prefix shared/
				path_style
				lease_ttl %s
				chunk_size 1MiB
			}
		}
		tag_ttl 1h
		%s
	}
}
`, filepath.Join(filepath.Dir(storage), "caddy-data"), port, storage, srv.Endpoint, srv.Bucket, leaseTTL, upstream)
}

// startNodes starts n nodes sharing srv's bucket, each with an empty
// local tier and the test hub as its docker.io upstream.
func startNodes(t *testing.T, srv *s3test.Server, n int, leaseTTL string) []*sharedNode {
	t.Helper()
	return startNodesWith(t, srv, n, leaseTTL, "upstream docker.io "+hub.URL)
}

// startNodesWith is startNodes with another upstream line.
func startNodesWith(t *testing.T, srv *s3test.Server, n int, leaseTTL, upstream string) []*sharedNode {
	t.Helper()
	t.Setenv("REGCACHE_TEST_S3_KEY", s3test.AccessKey)
	t.Setenv("REGCACHE_TEST_S3_SECRET", s3test.SecretKey)
	nodes := make([]*sharedNode, n)
	for i := range nodes {
		nd := &sharedNode{port: freePort(t), storage: filepath.Join(t.TempDir(), "cache"), upstream: upstream}
		nd.config = nodeCaddyfile(nd.port, nd.storage, srv, leaseTTL, upstream)
		nd.child = startChildCaddy(t, nd.port, nd.config)
		nodes[i] = nd
	}
	t.Cleanup(func() {
		for i, nd := range nodes {
			nd.child.kill(t) // its log is complete once it exited
			if strings.Contains(nd.child.log.String(), "DATA RACE") {
				t.Errorf("node %d reported a data race (go test -race)", i)
			}
			if t.Failed() {
				t.Logf("log of node %d:\n%s", i, nd.child.log)
			}
		}
	})
	return nodes
}

// restartEmpty kills the node and starts it again with an empty local
// tier.
func (nd *sharedNode) restartEmpty(t *testing.T, srv *s3test.Server, leaseTTL string) {
	t.Helper()
	nd.child.kill(t)
	nd.storage = filepath.Join(t.TempDir(), "cache")
	nd.config = nodeCaddyfile(nd.port, nd.storage, srv, leaseTTL, nd.upstream)
	nd.child = startChildCaddy(t, nd.port, nd.config)
}

// image is the reference of repo:tag through the node.
func (nd *sharedNode) image(repo, tag string) string {
	return fmt.Sprintf("127.0.0.1:%d/%s:%s", nd.port, strings.TrimPrefix(repo, "library/"), tag)
}

// waitShared waits until the bucket holds n verified objects and no fill
// in progress (uploads follow the verdict of a fill).
func waitShared(t *testing.T, srv *s3test.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		blobs, fills := srv.Keys("shared/blobs/"), srv.Keys("shared/fills/")
		if len(blobs) >= n && len(fills) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bucket holds %d objects and %d fill keys, want %d and none", len(blobs), len(fills), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getBlob GETs a blob through a node and returns its digest and size.
func getBlob(port int, repo, dgst string) (string, int64, error) {
	resp, err := http.Get(blobURL(port, repo, dgst))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return hashBody(resp.Body)
}

// TestS3NodesShareOneCache pulls an image through node A, then through
// node B, which costs the upstream nothing; then node A restarts with an
// empty disk and serves the image from the bucket at once.
func TestS3NodesShareOneCache(t *testing.T) {
	srv := s3test.Start(t)
	const layers = 3
	img, _, err := hub.PushImage("library/shared-one", "1", layers, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	imgLayers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := imgLayers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	layerSize, err := imgLayers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, srv, 2, "30s")
	a, b := nodes[0], nodes[1]
	hub.Counters.Reset()
	pullImage(t, a.image("library/shared-one", "1"))
	if hub.Counters.BlobGET.Load() != layers+1 {
		t.Fatalf("node A's cold pull: %d blob GETs, want %d (hub counters: %s)", hub.Counters.BlobGET.Load(), layers+1, hub.Counters)
	}
	// Layers, config and manifest.
	waitShared(t, srv, layers+2)
	if tags := srv.Keys("shared/tags/"); len(tags) != 1 {
		t.Errorf("tag records in the bucket: %v, want the one of shared-one:1", tags)
	}

	hub.Counters.Reset()
	start := time.Now()
	pullImage(t, b.image("library/shared-one", "1"))
	t.Logf("node B's pull from the bucket took %v", time.Since(start))
	wantCount(t, "node B's pull: upstream requests", hub.Counters.Upstream(), 0)

	a.restartEmpty(t, srv, "30s")
	hub.Counters.Reset()
	resp, err := http.Head(blobURL(a.port, "library/shared-one", layer.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != layerSize {
		t.Errorf("HEAD of a layer on the emptied node A: %d, %d bytes; want 200, %d bytes", resp.StatusCode, resp.ContentLength, layerSize)
	}
	pullImage(t, a.image("library/shared-one", "1"))
	wantCount(t, "node A's pull after a restart with an empty disk: upstream requests", hub.Counters.Upstream(), 0)
	if n := checkCacheIntegrity(t, a.storage); n != layers+2 {
		t.Errorf("node A's local tier holds %d objects after the pull, want %d", n, layers+2)
	}
}

// TestS3NodesOneFetchForConcurrentPulls has 20 clients, spread over three
// nodes, pull one cold blob at once: the upstream serves it once.
func TestS3NodesOneFetchForConcurrentPulls(t *testing.T) {
	srv := s3test.Start(t)
	const size = 32 << 20
	layer, _, err := hub.PushLargeBlobImage("library/shared-cold", "1", size, 21)
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, srv, 3, "30s")
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 16 << 20})
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })
	hub.Counters.Reset()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, n, err := getBlob(nodes[i%len(nodes)].port, "library/shared-cold", layer)
			if err == nil && (got != layer || n != size) {
				err = fmt.Errorf("got %s, %d bytes", got, n)
			}
			if err != nil {
				errs <- fmt.Errorf("client %d via node %d: %w", i, i%len(nodes), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("20 clients over 3 nodes got the %d MiB blob in %v", size>>20, time.Since(start))
	wantCount(t, "upstream blob downloads", hub.Counters.CDNGET.Load(), 1)
	waitShared(t, srv, 1)
	// One node downloaded for all; the other two followed its download
	// (or, had they come late, read the shared copy).
	fills := map[string]float64{}
	for _, nd := range nodes {
		for k, v := range scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", nd.port)) {
			if src, ok := strings.CutPrefix(k, `caddy_registry_cache_shared_fills_total{source="`); ok {
				src, _, _ = strings.Cut(src, `"`)
				fills[src] += v
			}
		}
	}
	t.Logf("fills by source over the nodes: %v", fills)
	if fills["upstream"] != 1 || fills["node"]+fills["bucket"] != 2 || fills["alone"] != 0 {
		t.Errorf("shared fills by source = %v, want upstream 1, node+bucket 2, alone 0", fills)
	}
}

// TestS3NodesRolloutOneManifestGET has nine clients, three per node,
// pull one new image at once: the upstream serves its manifest once (a
// GET Docker Hub counts against the pull limit) and each blob once.
func TestS3NodesRolloutOneManifestGET(t *testing.T) {
	srv := s3test.Start(t)
	const layers = 3
	if _, _, err := hub.PushImage("library/shared-rollout", "1", layers, 1<<20, false); err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, srv, 3, "30s")
	hub.Counters.Reset()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for i := range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pullQuietly(nodes[i%3].image("library/shared-rollout", "1")); err != nil {
				errs <- fmt.Errorf("client %d via node %d: %w", i, i%3, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("9 clients over 3 nodes pulled the image in %v; hub counters: %s", time.Since(start), hub.Counters)
	wantCount(t, "manifest GETs of the rollout", hub.Counters.ManifestGET.Load(), 1)
	wantCount(t, "blob GETs of the rollout", hub.Counters.BlobGET.Load(), layers+1)
}

// TestS3NodeKilledMidFill kills the node that downloads a blob while
// another node streams it from the bucket: that node takes the download
// over when the lease expires, and its client gets the whole, correct
// blob.
func TestS3NodeKilledMidFill(t *testing.T) {
	srv := s3test.Start(t)
	const size = 32 << 20
	layer, _, err := hub.PushLargeBlobImage("library/shared-kill", "1", size, 22)
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, srv, 2, "2s")
	a, b := nodes[0], nodes[1]
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 4 << 20})
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })
	hub.Counters.Reset()
	go func() {
		resp, err := http.Get(blobURL(a.port, "library/shared-kill", layer))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	waitUntil(t, "node A's download gets going", func() bool { return ingestBytes(a.storage) >= 3<<20 })
	type result struct {
		digest string
		n      int64
		err    error
	}
	done := make(chan result, 1)
	go func() {
		got, n, err := getBlob(b.port, "library/shared-kill", layer)
		done <- result{got, n, err}
	}()
	waitUntil(t, "node B streams node A's chunks", func() bool { return ingestBytes(b.storage) >= 1<<20 })
	a.child.kill(t)
	hub.SetFault(hubtest.Fault{})
	r := <-done
	if r.err != nil || r.digest != layer || r.n != size {
		t.Fatalf("node B's client after node A died: %s, %d bytes, %v; want %s, %d bytes", r.digest, r.n, r.err, layer, size)
	}
	wantCount(t, "upstream blob downloads (node A's, then node B's takeover)", hub.Counters.CDNGET.Load(), 2)
	waitShared(t, srv, 1)
	if n := metricSum(t, b.port, "caddy_registry_cache_shared_takeovers_total"); n != 1 {
		t.Errorf("node B's takeovers = %v, want 1", n)
	}
	b.child.kill(t) // its log is complete once it exited
	if !strings.Contains(b.child.log.String(), "took over a fill from the upstream") {
		t.Errorf("node B did not log taking the fill over:\n%s", b.child.log)
	}
}

// TestS3MissingBucketReported starts a node on a bucket that does not
// exist: it still serves, from the upstream, and reports the bucket at
// start.
func TestS3MissingBucketReported(t *testing.T) {
	srv := s3test.Start(t)
	if _, _, err := hub.PushImage("library/shared-nobucket", "1", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	bucket := srv.Bucket
	srv.Bucket = "missing"
	nodes := startNodes(t, srv, 1, "30s")
	srv.Bucket = bucket
	pullImage(t, nodes[0].image("library/shared-nobucket", "1"))
	nodes[0].child.kill(t)
	if log := nodes[0].child.log.String(); !strings.Contains(log, "shared bucket not usable") || !strings.Contains(log, `\"missing\" does not exist`) {
		t.Errorf("the node did not report the missing bucket:\n%s", log)
	}
}

// TestS3DownNodesKeepServing stops the object store: nodes serve what
// their local tiers hold, and fetch the rest from the upstream.
func TestS3DownNodesKeepServing(t *testing.T) {
	srv := s3test.Start(t)
	const layers = 2
	for _, repo := range []string{"library/shared-down-a", "library/shared-down-b"} {
		if _, _, err := hub.PushImage(repo, "1", layers, 1<<20, false); err != nil {
			t.Fatal(err)
		}
	}
	nodes := startNodes(t, srv, 2, "30s")
	a, b := nodes[0], nodes[1]
	pullImage(t, a.image("library/shared-down-a", "1"))
	waitShared(t, srv, layers+2)
	srv.Stop()

	hub.Counters.Reset()
	start := time.Now()
	pullImage(t, a.image("library/shared-down-a", "1"))
	t.Logf("node A's warm pull with the object store down took %v", time.Since(start))
	wantCount(t, "node A's warm pull with the object store down: upstream requests", hub.Counters.Upstream(), 0)

	start = time.Now()
	pullImage(t, b.image("library/shared-down-a", "1"))
	pullImage(t, b.image("library/shared-down-b", "1"))
	t.Logf("node B's two cold pulls with the object store down took %v", time.Since(start))
	if got := hub.Counters.BlobGET.Load(); got != 2*(layers+1) {
		t.Errorf("node B's pulls with the object store down: %d blob GETs, want %d", got, 2*(layers+1))
	}
	if n := metricSum(t, b.port, "caddy_registry_cache_shared_unavailable"); n != 1 {
		t.Errorf("node B's shared_unavailable = %v, want 1", n)
	}
	if n := metricSum(t, b.port, `caddy_registry_cache_shared_fills_total{source="alone"`); n != 2*(layers+1) {
		t.Errorf("node B's fills without the bucket = %v, want %d", n, 2*(layers+1))
	}
	b.child.kill(t) // its log is complete once it exited
	if !strings.Contains(b.child.log.String(), "shared object store unreachable") {
		t.Errorf("node B did not log the unreachable object store:\n%s", b.child.log)
	}
	if strings.Contains(b.child.log.String(), s3test.SecretKey) {
		t.Errorf("node B logged the object store's secret key:\n%s", b.child.log)
	}
}

// metricSum adds up the series of a node's metrics whose name (with
// labels) starts with prefix.
func metricSum(t *testing.T, port int, prefix string) float64 {
	t.Helper()
	var sum float64
	for k, v := range scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)) {
		if strings.HasPrefix(k, prefix) {
			sum += v
		}
	}
	return sum
}

// waitUntil polls cond until it holds, failing after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestS3NodesKeepPrivateContentPrivate pulls a private image through node
// A as the user the upstream allows. On node B, which finds the image in
// the bucket, an anonymous client and a refused user get refusals for the
// tag, the manifest, a blob and a blob's HEAD (answered from the bucket
// for allowed clients), and no blob leaves the CDN; the allowed user's pull
// on node B costs no upstream transfer.
func TestS3NodesKeepPrivateContentPrivate(t *testing.T) {
	srv := s3test.Start(t)
	h := privateHub(t)
	img, want, err := h.PushImage("corp/secret", "1", 2, 64<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	layer := firstLayer(t, img)
	nodes := startNodesWith(t, srv, 2, "30s", "upstream docker.io {\n\t\t\turl "+h.URL+"\n\t\t\ttrusted_realm localhost\n\t\t}")
	a, b := nodes[0], nodes[1]
	alice := &authn.Basic{Username: "alice", Password: "alice-pw-91c2"}
	if got, err := pullAs(a.image("corp/secret", "1"), alice); err != nil || got != want {
		t.Fatalf("alice's pull through node A: %s, %v; want %s", got, err, want)
	}
	waitShared(t, srv, 4) // two layers, the config and the manifest
	h.Counters.Reset()
	base := fmt.Sprintf("http://127.0.0.1:%d", b.port)
	bob := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:bob-pw-5d7e"))
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/v2/corp/secret/manifests/1"},
		{http.MethodGet, "/v2/corp/secret/manifests/" + want},
		{http.MethodGet, "/v2/corp/secret/blobs/" + layer.String()},
		{http.MethodHead, "/v2/corp/secret/blobs/" + layer.String()},
	} {
		for _, who := range []struct {
			name, auth string
			status     int
		}{
			{"anonymous", "", http.StatusUnauthorized},
			{"bob", bob, http.StatusForbidden},
		} {
			if resp := rawRequest(t, req.method, base+req.path, who.auth); resp.status != who.status {
				t.Errorf("node B, %s %s as %s: %d %s; want %d", req.method, req.path, who.name, resp.status, resp.body, who.status)
			}
		}
	}
	wantCount(t, "refusals on node B: blob GETs at the CDN", h.Counters.CDNGET.Load(), 0)
	if got, err := pullAs(b.image("corp/secret", "1"), alice); err != nil || got != want {
		t.Fatalf("alice's pull through node B: %s, %v; want %s", got, err, want)
	}
	wantCount(t, "alice's pull through node B: blob GETs at the CDN", h.Counters.CDNGET.Load(), 0)
	wantCount(t, "alice's pull through node B: manifest GETs upstream", h.Counters.ManifestGET.Load(), 0)
}
