package integration

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestMaxSizeEvictsAndPullsStillWork pulls images worth three times the
// cache budget: the cache stays within it, and every image, evicted or
// not, still pulls correctly (a miss refills cleanly).
func TestMaxSizeEvictsAndPullsStillWork(t *testing.T) {
	const budget = 1 << 20
	var refs []string
	for i := range 8 {
		if _, _, err := hub.PushImage(fmt.Sprintf("library/budget%d", i), "1", 2, 200<<10, false); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, fmt.Sprintf("budget%d:1", i))
	}
	m := startMirror(t, siteOptions{block: "max_size 1MiB"})
	for round := range 2 {
		for _, ref := range refs {
			pullImage(t, m.Host+"/"+ref)
		}
		waitForBudget(t, m.Storage, budget)
		t.Logf("round %d: %d KiB cached", round, blobBytes(t, m.Storage)>>10)
	}
	// The most recent image is whole in the cache.
	hub.Counters.Reset()
	pullImage(t, m.Host+"/"+refs[len(refs)-1])
	wantCount(t, "pull of the most recent image: upstream blob GETs", hub.Counters.BlobGET.Load(), 0)

	// A blob larger than the whole budget is streamed past the cache.
	layer, _, err := hub.PushLargeBlobImage("library/overbudget", "1", 2<<20, 5)
	if err != nil {
		t.Fatal(err)
	}
	for pass := range 2 {
		hub.Counters.Reset()
		resp := m.do(t, http.MethodGet, "/v2/overbudget/blobs/"+layer)
		got, n, err := hashBody(resp.Body)
		resp.Body.Close()
		if err != nil || got != layer || n != 2<<20 {
			t.Fatalf("blob over the budget, pass %d: %s, %d bytes, %v", pass, got, n, err)
		}
		// One GET learns the size (the fill gives up before writing a
		// byte), the second streams the blob past the cache.
		wantCount(t, "blob over the budget: CDN GETs", hub.Counters.CDNGET.Load(), 2)
	}
	waitForBudget(t, m.Storage, budget)
}

// waitForBudget waits until the cached files of storage fit budget
// (eviction runs in the background), failing the test if they never do.
func waitForBudget(t *testing.T, storage string, budget int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		used := blobBytes(t, storage)
		if used <= budget {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache holds %d bytes, over its budget of %d", used, budget)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDiskFullServesWithoutStoring puts the cache on a small tmpfs and
// fills it up: pulls keep working, streamed from the upstream without
// storing, and once space returns the cache stores again by itself.
func TestDiskFullServesWithoutStoring(t *testing.T) {
	if _, _, err := hub.PushImage("library/diskfull", "1", 2, 256<<10, false); err != nil {
		t.Fatal(err)
	}
	disk := mountTmpfs(t, "8m")
	m := startMirror(t, siteOptions{storage: filepath.Join(disk, "cache")})
	filler := fillDisk(t, disk)
	for pass := range 2 {
		hub.Counters.Reset()
		pullImage(t, m.Host+"/diskfull:1")
		if hub.Counters.CDNGET.Load() < 2 {
			t.Errorf("pull %d with a full disk: %d CDN GETs, want both layers from the upstream", pass, hub.Counters.CDNGET.Load())
		}
	}
	if n := blobBytes(t, m.Storage); n != 0 {
		t.Errorf("a full disk holds %d cached bytes", n)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The cache notices the space within a second or so; until it does,
	// pulls still work without storing.
	deadline := time.Now().Add(20 * time.Second)
	for blobBytes(t, m.Storage) < 512<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not store again once space returned")
		}
		pullImage(t, m.Host+"/diskfull:1")
		time.Sleep(200 * time.Millisecond)
	}
	hub.Counters.Reset()
	pullImage(t, m.Host+"/diskfull:1")
	wantCount(t, "pull once space returned: CDN GETs", hub.Counters.CDNGET.Load(), 0)
}

// mountTmpfs mounts a tmpfs of the given size on a new directory. It needs
// root; elsewhere the test is skipped (failed under CI=true).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a tmpfs: %v: %s", err, out)
		}
		t.Skipf("mounting a tmpfs needs root: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fillDisk writes a file into dir until the file system is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for len(chunk) > 0 {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			chunk = chunk[:len(chunk)/2]
		}
	}
	return path
}

// TestReloadKeepsCacheAndFills reloads the config while a client streams
// a slow fill: the client completes, a client of the new config joins the
// same fill (one upstream fetch), and the cache stays open.
func TestReloadKeepsCacheAndFills(t *testing.T) {
	const size = 16 << 20
	layer, _, err := hub.PushLargeBlobImage("library/reload", "1", size, 21)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()
	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 8 << 20})
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })
	type result struct {
		digest string
		n      int64
		err    error
	}
	get := func(out chan<- result) {
		resp, err := http.Get(m.URL + "/v2/reload/blobs/" + layer)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		d, n, err := hashBody(resp.Body)
		out <- result{d, n, err}
	}
	first := make(chan result, 1)
	go get(first)
	deadline := time.Now().Add(10 * time.Second)
	for ingestBytes(m.Storage) < 1<<20 {
		if time.Now().After(deadline) {
			t.Fatal("the fill never got going")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The same site with another tag_ttl: a reload that keeps the cache.
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		level ERROR
	}
}

http://%s {
	bind 127.0.0.1
	header X-Config reloaded
	registry_cache {
		storage %s
		tag_ttl 2h
		upstream docker.io %s
	}
}
`, filepath.Join(filepath.Dir(m.Storage), "caddy-data"), m.Host, m.Storage, hub.URL))
	}()
	for {
		resp, err := http.Get(m.URL + "/v2/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Config") == "reloaded" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the new config never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ingestBytes(m.Storage) == 0 {
		t.Fatal("the fill ended before the reload: make it slower")
	}
	second := make(chan result, 1)
	go get(second)
	for i, ch := range []chan result{first, second} {
		r := <-ch
		if r.err != nil || r.digest != layer || r.n != size {
			t.Errorf("client %d: %s, %d bytes, %v; want %s, %d bytes", i+1, r.digest, r.n, r.err, layer, size)
		}
	}
	<-reloaded
	wantCount(t, "upstream fetches of the blob", hub.Counters.CDNGET.Load(), 1)
}
