package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/regcache/regcache/caddymodule"
)

// TestAdminStats reads GET /registry_cache/stats from Caddy's admin
// endpoint after a cold and a warm pull through an upstream whose first
// endpoint is dead: the cache's figures, the requests by kind and result,
// and each endpoint's health.
func TestAdminStats(t *testing.T) {
	if _, _, err := hub.PushImage("library/stats", "1", 2, 4096, false); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
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
}
