package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regcache/regcache/caddymodule"
	"github.com/regcache/regcache/mirror"
)

// TestAdminStats reads GET /registry_cache/stats from Caddy's admin
// endpoint after a cold and a warm pull through an upstream whose first
// endpoint is dead: the cache's figures, the requests by kind and result,
// and each endpoint's health.
func TestAdminStats(t *testing.T) {
	if _, _, err := hub.PushImage("library/stats", "1", 2, 4096, false); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)) // nothing listens there
	dir := t.TempDir()
	port, adminPort := freePort(t), freePort(t)
	storage := filepath.Join(dir, "cache")
	loadCaddyfile(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		level ERROR
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	registry_cache {
		storage %s
		# The cold pull's blobs are misses, not prefetched hits.
		prefetch off
		upstream docker.io {
			url %s
			url %s
		}
	}
}
`, adminPort, filepath.Join(dir, "caddy-data"), port, storage, dead, hub.URL))
	host := fmt.Sprintf("127.0.0.1:%d", port)
	pullImage(t, host+"/stats:1")
	pullImage(t, host+"/stats:1")

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/registry_cache/stats", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /registry_cache/stats: %d", resp.StatusCode)
	}
	var stats caddymodule.StatsResponse
	if err := json.NewDecoder(resp.Body).Decode(&stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Caches) != 1 {
		t.Fatalf("%d caches reported, want 1: %+v", len(stats.Caches), stats)
	}
	c := stats.Caches[0]
	if c.Storage != storage || c.Objects < 4 || c.UsedBytes < 8192 || c.BudgetBytes != caddymodule.DefaultMaxSize {
		t.Errorf("cache figures %+v", c)
	}
	if c.Requests["blob"]["miss"] < 3 || c.Requests["blob"]["hit"] < 3 || c.Requests["manifest"]["hit"] < 1 {
		t.Errorf("requests %v: want the cold pull's blob misses and the warm pull's hits", c.Requests)
	}
	if c.HitRatio <= 0 || c.HitRatio >= 1 {
		t.Errorf("hit ratio %v after a cold and a warm pull", c.HitRatio)
	}
	if len(c.Upstreams) != 1 || c.Upstreams[0].Name != "docker.io" || len(c.Upstreams[0].Endpoints) != 2 {
		t.Fatalf("upstreams %+v", c.Upstreams)
	}
	eps := c.Upstreams[0].Endpoints
	if eps[0].Healthy || eps[0].LastError == "" || eps[0].FailedUntil == nil {
		t.Errorf("dead endpoint reported as %+v", eps[0])
	}
	if !eps[1].Healthy || eps[1].LastSuccess == nil {
		t.Errorf("working endpoint reported as %+v", eps[1])
	}
	if rl := c.Upstreams[0].RateLimit; rl == nil || rl.Limit <= 0 || rl.WindowSeconds <= 0 {
		t.Errorf("rate limit %+v, want the hub's report", rl)
	}
	// The metrics are on the admin endpoint's /metrics too.
	series := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	found := false
	for key := range series {
		if strings.HasPrefix(key, "caddy_registry_cache_requests_total{") && strings.Contains(key, storage) {
			found = true
		}
	}
	if !found {
		t.Errorf("the admin endpoint's /metrics has no caddy_registry_cache_requests_total of %s", storage)
	}
}

// startAdminMirror runs a mirror site with Caddy's admin endpoint on and
// returns the site's host and the admin endpoint's base URL.
func startAdminMirror(t *testing.T, storage string) (host, admin string) {
	t.Helper()
	return startAdminMirrorWith(t, storage, "")
}

// startAdminMirrorWith is startAdminMirror with extra lines inside
// registry_cache { }.
func startAdminMirrorWith(t *testing.T, storage, block string) (host, admin string) {
	t.Helper()
	port, adminPort := freePort(t), freePort(t)
	loadCaddyfile(t, caddyGlobalsAdmin(filepath.Join(filepath.Dir(storage), "caddy-data"), fmt.Sprintf("127.0.0.1:%d", adminPort))+fmt.Sprintf(`
http://127.0.0.1:%d {
	bind 127.0.0.1
	registry_cache {
		storage %s
		# The cold pull's blobs are misses, not prefetched hits.
		prefetch off
		upstream docker.io %s
%s
	}
}
`, port, storage, hub.URL, block))
	return fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", adminPort)
}

// adminJSON sends a request to the admin endpoint and decodes its JSON
// answer into out; it returns the status.
func adminJSON(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

// TestAdminRepositoriesAndPurge lists what the cache holds, purges one
// image, and checks that only its content went and that it pulls again.
func TestAdminRepositoriesAndPurge(t *testing.T) {
	for _, repo := range []string{"library/inventory", "library/neighbour"} {
		if _, _, err := hub.PushImage(repo, "1", 2, 4096, false); err != nil {
			t.Fatal(err)
		}
	}
	storage := filepath.Join(t.TempDir(), "cache")
	host, admin := startAdminMirror(t, storage)
	pullImage(t, host+"/inventory:1")
	pullImage(t, host+"/neighbour:1")

	var repos caddymodule.RepositoriesResponse
	if status := adminJSON(t, http.MethodGet, admin+"/registry_cache/repositories", "", &repos); status != http.StatusOK || len(repos.Caches) != 1 {
		t.Fatalf("GET repositories: %d %+v", status, repos)
	}
	found := map[string]mirror.RepositoryInfo{}
	for _, ri := range repos.Caches[0].Repositories {
		found[ri.Upstream+"/"+ri.Repository] = ri
	}
	inv, ok := found["docker.io/library/inventory"]
	if !ok || len(inv.Tags) != 1 || inv.Tags[0].Tag != "1" || inv.Objects != 4 || inv.Bytes < 8192 || inv.LastUsed.IsZero() {
		t.Fatalf("inventory reported as %+v (all: %v)", inv, found)
	}
	before := blobBytes(t, storage)

	var purged caddymodule.PurgeResponse
	if status := adminJSON(t, http.MethodPost, admin+"/registry_cache/purge", `{"image":"inventory:1"}`, &purged); status != http.StatusOK {
		t.Fatalf("purge: status %d", status)
	}
	if len(purged.Caches) != 1 || purged.Caches[0].Tags != 1 || purged.Caches[0].Objects != 4 || purged.Caches[0].Bytes != inv.Bytes {
		t.Errorf("purge result %+v, want 1 tag and the 4 objects of %d bytes", purged, inv.Bytes)
	}
	if after := blobBytes(t, storage); after != before-inv.Bytes {
		t.Errorf("cache holds %d bytes after the purge, want %d", after, before-inv.Bytes)
	}
	repos = caddymodule.RepositoriesResponse{}
	adminJSON(t, http.MethodGet, admin+"/registry_cache/repositories", "", &repos)
	for _, ri := range repos.Caches[0].Repositories {
		if ri.Repository == "library/inventory" {
			t.Errorf("purged repository still listed: %+v", ri)
		}
	}
	// The neighbour is whole; the purged image pulls again from upstream.
	hub.Counters.Reset()
	pullImage(t, host+"/neighbour:1")
	wantCount(t, "pull of the image left alone: upstream requests", hub.Counters.Upstream(), 0)
	pullImage(t, host+"/inventory:1")
	if hub.Counters.CDNGET.Load() != 3 {
		t.Errorf("pull after the purge: %d CDN GETs, want 3", hub.Counters.CDNGET.Load())
	}
	// A whole repository goes with all its tags.
	purged = caddymodule.PurgeResponse{}
	if status := adminJSON(t, http.MethodPost, admin+"/registry_cache/purge", `{"repository":"docker.io/library/neighbour"}`, &purged); status != http.StatusOK ||
		len(purged.Caches) != 1 || purged.Caches[0].Tags != 1 || purged.Caches[0].Objects != 4 {
		t.Errorf("purge of a repository: %d %+v, want its tag and 4 objects", status, purged)
	}
	for _, body := range []string{`{}`, `{"image":"a","repository":"b"}`, `{"image":"Bad:1"}`, `{"image":"evil.example/x:1"}`, `not json`} {
		if status := adminJSON(t, http.MethodPost, admin+"/registry_cache/purge", body, nil); status != http.StatusBadRequest {
			t.Errorf("purge %s: status %d, want 400", body, status)
		}
	}
}

// TestAdminWarm warms the cache with one platform of a multi-platform
// image and a missing image through POST /registry_cache/warm, reading the
// progress lines; a pull of the warmed platform then costs no upstream
// request, while another platform still comes from the upstream.
func TestAdminWarm(t *testing.T) {
	if _, _, err := hub.PushIndex("library/warmme", "1", []string{"linux/amd64", "linux/arm64"}, false); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(t.TempDir(), "cache")
	host, admin := startAdminMirror(t, storage)
	resp, err := http.Post(admin+"/registry_cache/warm", "application/json",
		strings.NewReader(`{"images":["warmme:1","docker.io/library/absent:1"],"platforms":["linux/amd64"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("warm: status %d", resp.StatusCode)
	}
	last := map[string]mirror.WarmProgress{}
	lines := 0
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var p mirror.WarmProgress
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		last[p.Image] = p
		lines++
	}
	if w := last["warmme:1"]; !w.Done || w.Error != "" || w.Manifests != 2 || w.BlobsTotal == 0 || w.Blobs != w.BlobsTotal || w.Bytes != w.BytesTotal {
		t.Errorf("warmme:1 ended with %+v, want done with the index, one platform's manifest and all its blobs", w)
	}
	if a := last["docker.io/library/absent:1"]; a.Done || a.Error == "" {
		t.Errorf("absent image ended with %+v, want an error", a)
	}
	if lines < 4 {
		t.Errorf("%d progress lines, want one per manifest and blob", lines)
	}

	hub.Counters.Reset()
	pullPlatform(t, host+"/warmme:1", "amd64")
	wantCount(t, "pull of the warmed platform: upstream requests", hub.Counters.Upstream(), 0)
	pullPlatform(t, host+"/warmme:1", "arm64")
	if hub.Counters.CDNGET.Load() == 0 {
		t.Errorf("the platform not warmed came from nowhere: %s", hub.Counters)
	}
}

// pullPlatform pulls one linux platform of an image and validates it.
func pullPlatform(t *testing.T, image, arch string) {
	t.Helper()
	ref, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}),
		remote.WithTransport(http.DefaultTransport.(*http.Transport).Clone()))
	if err != nil {
		t.Fatalf("pulling %s for %s: %v", image, arch, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validating %s for %s: %v", image, arch, err)
	}
}

// TestCommandLine runs `caddy registry-cache warm|stats|purge` (the test
// binary acting as the caddy command) against the running instance's admin
// API, and checks their output and exit status.
func TestCommandLine(t *testing.T) {
	if _, _, err := hub.PushImage("library/clitool", "1", 2, 4096, false); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(t.TempDir(), "cache")
	host, admin := startAdminMirror(t, storage)
	address := strings.TrimPrefix(admin, "http://")
	caddyCmd := func(args ...string) (string, error) {
		cmd := exec.Command(os.Args[0], append([]string{"registry-cache"}, args...)...)
		cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := caddyCmd("warm", "--address", address, "clitool:1")
	if err != nil || !strings.Contains(out, "clitool:1  manifests 1  blobs 3/3") || !strings.Contains(out, "done") {
		t.Errorf("warm: %v\n%s", err, out)
	}
	// The warmed image pulls without the upstream.
	hub.Counters.Reset()
	pullImage(t, host+"/clitool:1")
	wantCount(t, "pull after warm: upstream requests", hub.Counters.Upstream(), 0)
	out, err = caddyCmd("stats", "--address", address)
	if err != nil || !strings.Contains(out, "cache "+storage) || !strings.Contains(out, "upstream docker.io") ||
		!regexp.MustCompile(`blob +hit [1-9][0-9]*, miss 3,`).MatchString(out) {
		t.Errorf("stats: %v\n%s", err, out)
	}
	out, err = caddyCmd("purge", "--address", address, "clitool:1")
	if err != nil || !strings.Contains(out, "removed 1 tags, 4 objects") {
		t.Errorf("purge: %v\n%s", err, out)
	}
	if out, err := caddyCmd("warm", "--address", address, "docker.io/library/nowhere:1"); err == nil || !strings.Contains(out, "failed") {
		t.Errorf("warm of a missing image: %v, want a failure\n%s", err, out)
	}
	// On a terminal (script(1) gives the command one), warm redraws one
	// line per image instead of printing a line per step.
	if _, err := exec.LookPath("script"); err == nil {
		cmd := exec.Command("script", "-qec", strings.Join([]string{os.Args[0], "registry-cache", "warm", "--address", address, "clitool:1"}, " "), "/dev/null")
		cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "\r\033[K") || !strings.Contains(string(out), "done") {
			t.Errorf("warm on a terminal: %v\n%q", err, out)
		}
	}
}
