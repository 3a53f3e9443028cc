package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestMetrics pulls an image cold and warm through a site that also
// serves Caddy's metrics handler, and reads the caddy_registry_cache_*
// series: requests by kind and result, bytes by source, upstream
// exchanges, disk use and budget, the pull budget the hub reports. No
// series names a repository, tag or digest.
func TestMetrics(t *testing.T) {
	if _, _, err := hub.PushImage("library/metered", "1", 2, 4096, false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	storage := filepath.Join(dir, "cache")
	loadCaddyfile(t, caddyGlobals(filepath.Join(dir, "caddy-data"))+fmt.Sprintf(`
http://127.0.0.1:%d {
	bind 127.0.0.1
	metrics /metrics
	registry_cache {
		storage %s
		max_size 1GiB
		# The cold pull's blobs are misses, not prefetched hits.
		prefetch off
		upstream docker.io %s
	}
}
`, port, storage, hub.URL))
	host := fmt.Sprintf("127.0.0.1:%d", port)
	before := scrape(t, "http://"+host+"/metrics")
	pullImage(t, host+"/metered:1")
	pullImage(t, host+"/metered:1")
	series := scrape(t, "http://"+host+"/metrics")
	// The counters moved with the pulls.
	moved := 0
	for key, v := range series {
		if strings.HasPrefix(key, "caddy_registry_cache_requests_total{") && v > before[key] {
			moved++
		}
	}
	if moved < 3 {
		t.Errorf("%d request series moved with the pulls, want at least 3 (manifest and blob misses and hits)", moved)
	}
	at := func(name string, labels ...string) float64 {
		t.Helper()
		want := append([]string{`storage="` + storage + `"`}, labels...)
		for key, v := range series {
			n, l, _ := strings.Cut(key, "{")
			if n != name {
				continue
			}
			ok := true
			for _, lv := range want {
				if !strings.Contains(l, lv) {
					ok = false
				}
			}
			if ok {
				return v
			}
		}
		t.Errorf("no series %s with %v", name, want)
		return -1
	}
	checks := []struct {
		what string
		got  float64
		min  float64
	}{
		{"manifest misses (cold pull)", at("caddy_registry_cache_requests_total", `kind="manifest"`, `result="miss"`), 1},
		{"manifest hits (warm pull)", at("caddy_registry_cache_requests_total", `kind="manifest"`, `result="hit"`), 1},
		{"blob misses (cold pull)", at("caddy_registry_cache_requests_total", `kind="blob"`, `result="miss"`), 3},
		{"blob hits (warm pull)", at("caddy_registry_cache_requests_total", `kind="blob"`, `result="hit"`), 3},
		{"bytes from the cache", at("caddy_registry_cache_served_bytes_total", `source="cache"`), 8192},
		{"bytes from the upstream", at("caddy_registry_cache_served_bytes_total", `source="upstream"`), 8192},
		{"disk used", at("caddy_registry_cache_disk_used_bytes"), 8192},
		{"objects", at("caddy_registry_cache_objects"), 4},
		{"rate-limit budget reported by the hub", at("caddy_registry_cache_rate_limit_remaining", `upstream="docker.io"`), 1},
	}
	for _, c := range checks {
		if c.got < c.min {
			t.Errorf("%s = %v, want at least %v", c.what, c.got, c.min)
		}
	}
	if got := at("caddy_registry_cache_disk_budget_bytes"); got != 1<<30 {
		t.Errorf("disk budget = %v, want %d", got, 1<<30)
	}
	if got := at("caddy_registry_cache_fills_in_flight"); got != 0 {
		t.Errorf("fills in flight after the pulls = %v, want 0", got)
	}
	if got := at("caddy_registry_cache_requests_total", `kind="blob"`, `result="error"`); got != 0 {
		t.Errorf("blob errors = %v, want 0", got)
	}
	// The cold pull: a token, the manifest, three blob GETs answered with
	// redirects to the CDN, which answers them.
	exchanges := map[string]float64{}
	for key, v := range series {
		if strings.HasPrefix(key, "caddy_registry_cache_upstream_requests_total{") && strings.Contains(key, `upstream="docker.io"`) {
			for _, kind := range []string{"registry", "token", "redirect"} {
				if strings.Contains(key, `kind="`+kind+`"`) {
					exchanges[kind] += v
				}
			}
		}
		if strings.HasPrefix(key, "caddy_registry_cache_") && (strings.Contains(key, "sha256") || strings.Contains(key, "metered")) {
			t.Errorf("a series names content: %s", key)
		}
	}
	for kind, min := range map[string]float64{"registry": 4, "token": 1, "redirect": 3} {
		if exchanges[kind] < min {
			t.Errorf("upstream %s exchanges = %v, want at least %v", kind, exchanges[kind], min)
		}
	}
	if n := series[`caddy_registry_cache_upstream_request_duration_seconds_count{kind="registry",upstream="docker.io"}`]; n < 4 {
		t.Errorf("upstream latency observations = %v, want at least 4", n)
	}
	checkDashboard(t, series)
}

// checkDashboard reads the Grafana dashboard in docs/: every panel has a
// query, and every metric its queries name is one the module exports.
func checkDashboard(t *testing.T, series map[string]float64) {
	t.Helper()
	data, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	exported := map[string]bool{}
	for key := range series {
		name, _, _ := strings.Cut(key, "{")
		exported[name] = true
	}
	metricName := regexp.MustCompile(`caddy_registry_cache_[a-z_]*[a-z]`)
	if len(dash.Panels) < 8 {
		t.Errorf("the dashboard has %d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			names := metricName.FindAllString(target.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q queries no regcache metric: %s", p.Title, target.Expr)
			}
			for _, n := range names {
				if !exported[n] {
					t.Errorf("panel %q queries %s, which the module does not export", p.Title, n)
				}
			}
		}
	}
}

// scrape reads a Prometheus text exposition into series → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	series := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return series
}
