package integration

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/caddymodule"
)

// TestStatusPageInChromium renders the admin API's status page in
// headless Chromium after a cold and a warm pull, and checks that the
// rendered page shows the cache, its hit ratio as the stats report it,
// the disk use against the budget, the upstream's health and budget, the
// top repositories and the chart, with nothing loaded from elsewhere.
func TestStatusPageInChromium(t *testing.T) {
	chromium := clientBinary(t, "chromium")
	if _, _, err := hub.PushImage("library/pagetest", "1", 2, 4096, false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	storage := filepath.Join(dir, "cache")
	port, adminPort, pagePort := freePort(t), freePort(t), freePort(t)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	// Caddy's admin endpoint refuses browsers (its cross-site protection
	// rejects requests with Sec-Fetch-* headers and no allowed Origin), so
	// an operator opens the page through a site that proxies to it, as the
	// README shows.
	loadCaddyfile(t, caddyGlobalsAdmin(filepath.Join(dir, "caddy-data"), fmt.Sprintf("127.0.0.1:%d", adminPort))+fmt.Sprintf(`
http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	registry_cache {
		storage %[4]s
		upstream docker.io %[5]s
	}
}

http://127.0.0.1:%[6]d {
	bind 127.0.0.1
	reverse_proxy /registry_cache/* 127.0.0.1:%[1]d {
		header_up Host 127.0.0.1:%[1]d
		header_up -Origin
		header_up -Referer
		header_up -Sec-Fetch-*
	}
}
`, adminPort, dir, port, storage, hub.URL, pagePort))
	host := fmt.Sprintf("127.0.0.1:%d", port)
	page := fmt.Sprintf("http://127.0.0.1:%d/registry_cache/", pagePort)
	pullImage(t, host+"/pagetest:1")
	pullImage(t, host+"/pagetest:1")
	var stats caddymodule.StatsResponse
	if status := adminJSON(t, http.MethodGet, admin+"/registry_cache/stats", "", &stats); status != http.StatusOK || len(stats.Caches) != 1 {
		t.Fatalf("stats: %d %+v", status, stats)
	}
	ratio := fmt.Sprintf("%.1f%%", 100*stats.Caches[0].HitRatio)

	profile := shortTempDir(t)
	shot := filepath.Join(profile, "status.png")
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(profile, "profile")}
		cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+profile)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	dom := run("--dump-dom", page)
	for _, want := range []string{
		"<title>regcache status</title>",
		storage,
		ratio,
		"docker.io/library/pagetest",
		"upstream", hub.URL, "healthy",
		"of 100", // the pull budget the hub reports
		"<polyline",
		"10 GiB", // the default budget
		`id="version">` + html.EscapeString(caddymodule.Version()) + "<",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	for _, external := range []string{"<script src", "<link", "http://cdn", "https://"} {
		if strings.Contains(dom, external) {
			t.Errorf("the page refers to something external: %q", external)
		}
	}
	run("--screenshot="+shot, "--window-size=1000,900", page)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Errorf("screenshot of the status page: %v, %v", fi, err)
	}
}
