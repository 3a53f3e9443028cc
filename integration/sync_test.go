package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regcache/regcache/caddymodule"
	"github.com/regcache/regcache/integration/hubtest"
	"github.com/regcache/regcache/schedule"
)

// runSyncRule runs a sync rule now through the admin API and returns its
// status at the end of the run, failing the test unless each image's
// progress came before it.
func runSyncRule(t *testing.T, admin, rule string) schedule.Status {
	t.Helper()
	resp, err := http.Post(admin+"/registry_cache/sync", "application/json", strings.NewReader(fmt.Sprintf(`{"rule":%q}`, rule)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sync %s: status %d", rule, resp.StatusCode)
	}
	var finished *schedule.Status
	images := map[string]bool{}
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var p schedule.Progress
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Finished != nil {
			finished = p.Finished
		} else if p.Done {
			images[p.Image] = true
		}
	}
	if finished == nil {
		t.Fatalf("sync %s: the progress stream ended without the rule's status", rule)
	}
	if finished.Result == schedule.ResultOK && len(images) != finished.Images {
		t.Errorf("sync %s: progress finished %d images, the status counts %d", rule, len(images), finished.Images)
	}
	return *finished
}

// syncStats returns the first cache's figures from the admin API.
func syncStats(t *testing.T, admin string) caddymodule.CacheStats {
	t.Helper()
	var stats caddymodule.StatsResponse
	if status := adminJSON(t, http.MethodGet, admin+"/registry_cache/stats", "", &stats); status != http.StatusOK || len(stats.Caches) != 1 {
		t.Fatalf("stats: status %d, %d caches", status, len(stats.Caches))
	}
	return stats.Caches[0]
}

// TestSyncRule runs a sync rule against the test hub: its images are in
// the cache before any client asks (the client's pull makes no upstream
// request), an unchanged repository costs one tag list and a HEAD per
// tag, a 429 pauses the rule and the next run completes, with what the
// rule keeps pinned, and the command line runs it too.
func TestSyncRule(t *testing.T) {
	const repo = "library/synctest"
	for _, tag := range []string{"1.0", "2.0", "latest"} {
		if _, _, err := hub.PushImage(repo, tag, 2, 4096, false); err != nil {
			t.Fatal(err)
		}
	}
	const rule = "docker.io/library/synctest"
	storage := filepath.Join(t.TempDir(), "cache")
	host, admin := startAdminMirrorWith(t, storage, blockLines(
		"sync "+rule+" {", "\ttags 1.* latest", "\tsemver <2", "\tevery 1h", "}"))

	hub.Counters.Reset()
	st := runSyncRule(t, admin, rule)
	if st.Result != schedule.ResultOK || st.Images != 2 || st.Updated != 2 || st.LastBytes == 0 {
		t.Fatalf("first run: %+v, want ok with 1.0 and latest fetched", st)
	}
	wantCount(t, "first run: tag lists", hub.Counters.TagsList.Load(), 1)
	wantCount(t, "first run: manifest GETs", hub.Counters.ManifestGET.Load(), 2)

	// A client's first pull makes no upstream request.
	hub.Counters.Reset()
	pullImage(t, host+"/synctest:1.0")
	wantCount(t, "pull after the sync: upstream requests", hub.Counters.Upstream(), 0)

	// Unchanged: one tag list, a HEAD per tag, nothing else.
	hub.Counters.Reset()
	st = runSyncRule(t, admin, rule)
	if st.Result != schedule.ResultOK || st.Updated != 0 || st.LastBytes != 0 {
		t.Errorf("unchanged run: %+v, want ok with nothing fetched", st)
	}
	wantCount(t, "unchanged: tag lists", hub.Counters.TagsList.Load(), 1)
	wantCount(t, "unchanged: manifest HEADs", hub.Counters.ManifestHEAD.Load(), 2)
	wantCount(t, "unchanged: manifest GETs", hub.Counters.ManifestGET.Load(), 0)
	wantCount(t, "unchanged: blob GETs", hub.Counters.BlobGET.Load()+hub.Counters.CDNGET.Load(), 0)

	// A new tag, and the upstream answers 429: the rule pauses.
	if _, _, err := hub.PushImage(repo, "1.1", 2, 4096, false); err != nil {
		t.Fatal(err)
	}
	hub.SetFault(hubtest.Fault{Kind: hubtest.Fault429, Target: hubtest.TargetManifest, Count: 1})
	st = runSyncRule(t, admin, rule)
	hub.SetFault(hubtest.Fault{})
	if st.Result != schedule.ResultPaused || !strings.Contains(st.Message, "429") {
		t.Fatalf("run with a 429: %+v, want paused, saying why", st)
	}
	if cs := syncStats(t, admin); len(cs.Sync) != 1 || cs.Sync[0].Result != schedule.ResultPaused || cs.Sync[0].NextRun.IsZero() {
		t.Errorf("stats after the pause: %+v, want the rule paused with its next run", cs.Sync)
	}

	// The next run resumes and completes.
	st = runSyncRule(t, admin, rule)
	if st.Result != schedule.ResultOK || st.Images != 3 || st.Updated != 1 || st.Runs[schedule.ResultPaused] != 1 {
		t.Fatalf("run after the pause: %+v, want ok with 1.1 fetched", st)
	}
	hub.Counters.Reset()
	pullImage(t, host+"/synctest:1.1")
	wantCount(t, "pull of the new tag: upstream requests", hub.Counters.Upstream(), 0)
	// 1.0, 1.1 and latest: a manifest, a config and two layers each.
	if cs := syncStats(t, admin); cs.PinnedObjects != 12 || cs.Sync[0].Pinned != 12 {
		t.Errorf("pinned %d objects (rule: %d), want 12", cs.PinnedObjects, cs.Sync[0].Pinned)
	}

	// Metrics and the status page report the rule.
	series := scrape(t, admin+"/metrics")
	for name, want := range map[string]float64{
		`caddy_registry_cache_sync_runs_total{result="ok",rule="` + rule + `",storage="` + storage + `"}`:     3,
		`caddy_registry_cache_sync_runs_total{result="paused",rule="` + rule + `",storage="` + storage + `"}`: 1,
		`caddy_registry_cache_sync_paused{rule="` + rule + `",storage="` + storage + `"}`:                     0,
		`caddy_registry_cache_sync_images{rule="` + rule + `",storage="` + storage + `"}`:                     3,
		`caddy_registry_cache_pinned_objects{storage="` + storage + `"}`:                                      12,
	} {
		if got, ok := series[name]; !ok || got != want {
			t.Errorf("metric %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	page := getBody(t, admin+"/registry_cache/")
	for _, want := range []string{"Sync rules", rule, "Oldest entries", "objects are pinned by sync rules"} {
		if !strings.Contains(page, want) {
			t.Errorf("the status page lacks %q", want)
		}
	}

	// The command line runs it with warm's progress display.
	cmd := exec.Command(os.Args[0], "registry-cache", "sync", "--address", strings.TrimPrefix(admin, "http://"), rule)
	cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "synctest:1.1  manifests 1  blobs 3/3") ||
		!strings.Contains(string(out), rule+"  ok  3 images, 0 updated") {
		t.Errorf("caddy registry-cache sync: %v\n%s", err, out)
	}
	cmd = exec.Command(os.Args[0], "registry-cache", "stats", "--address", strings.TrimPrefix(admin, "http://"))
	cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sync        "+rule+"  ok  3 images") ||
		!strings.Contains(string(out), "12 objects pinned by sync rules") {
		t.Errorf("caddy registry-cache stats: %v\n%s", err, out)
	}
	cmd = exec.Command(os.Args[0], "registry-cache", "sync", "--address", strings.TrimPrefix(admin, "http://"), "docker.io/library/other")
	cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("sync of an unknown rule succeeded:\n%s", out)
	}
}

// getBody GETs url and returns its body, failing the test unless it
// answers 200.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// TestSyncRulePlatforms runs a rule of one multi-platform image limited
// to one platform: it fetches the index and that platform's manifest and
// blobs only, pins them, and an unchanged run costs one HEAD (a rule of
// one image lists no tags).
func TestSyncRulePlatforms(t *testing.T) {
	if _, _, err := hub.PushIndex("library/syncmulti", "1", []string{"linux/amd64", "linux/arm64"}, true); err != nil {
		t.Fatal(err)
	}
	const rule = "syncmulti:1"
	storage := filepath.Join(t.TempDir(), "cache")
	host, admin := startAdminMirrorWith(t, storage, blockLines("sync "+rule+" {", "\tplatforms linux/amd64", "}"))
	hub.Counters.Reset()
	st := runSyncRule(t, admin, rule)
	// The index, the amd64 manifest, its config and its layer.
	if st.Result != schedule.ResultOK || st.Images != 1 || st.Pinned != 4 {
		t.Fatalf("run: %+v, want ok with 4 objects pinned", st)
	}
	wantCount(t, "run: manifest GETs", hub.Counters.ManifestGET.Load(), 2)
	wantCount(t, "run: tag lists", hub.Counters.TagsList.Load(), 0)

	hub.Counters.Reset()
	pullPlatform(t, host+"/syncmulti:1", "amd64")
	wantCount(t, "pull of the synced platform: upstream requests", hub.Counters.Upstream(), 0)

	hub.Counters.Reset()
	if st := runSyncRule(t, admin, rule); st.Result != schedule.ResultOK || st.Updated != 0 {
		t.Errorf("unchanged run: %+v, want ok with nothing fetched", st)
	}
	wantCount(t, "unchanged: manifest HEADs", hub.Counters.ManifestHEAD.Load(), 1)
	wantCount(t, "unchanged: manifest GETs", hub.Counters.ManifestGET.Load(), 0)

	pullPlatform(t, host+"/syncmulti:1", "arm64")
	if hub.Counters.CDNGET.Load() == 0 {
		t.Errorf("the platform not synced came from nowhere: %s", hub.Counters)
	}
}
