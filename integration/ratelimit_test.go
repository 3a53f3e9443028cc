package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/regcache/regcache/integration/hubtest"
)

// wantTooMany fails the test unless resp is 429 TOOMANYREQUESTS in OCI
// error JSON with a Retry-After of more than min and at most max seconds,
// and returns that Retry-After.
func wantTooMany(t *testing.T, what string, resp *http.Response, min, max int) int {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e ociErrorBody
	if resp.StatusCode != http.StatusTooManyRequests || json.Unmarshal(body, &e) != nil ||
		len(e.Errors) == 0 || e.Errors[0].Code != "TOOMANYREQUESTS" {
		t.Errorf("%s: %d %s, want 429 TOOMANYREQUESTS", what, resp.StatusCode, body)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra <= min || ra > max {
		t.Errorf("%s: Retry-After %q, want more than %d and at most %d seconds", what, resp.Header.Get("Retry-After"), min, max)
	}
	return ra
}

// TestPullBudgetStopsManifestGETs: once the hub reports its pull budget
// spent, no manifest GET reaches it; cached tags are still served
// (revalidated with free HEADs, stale when they moved), uncached ones
// answer 429 with a Retry-After; a HEAD that reports budget again resumes
// the GETs.
func TestPullBudgetStopsManifestGETs(t *testing.T) {
	_, a, err := hub.PushImage("library/budget-a", "1", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hub.PushImage("library/budget-b", "1", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	_, c, err := hub.PushImage("library/budget-c", "1", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	hub.SetPullLimit(2)
	t.Cleanup(func() { hub.SetPullLimit(0) })
	// Every pull by tag revalidates with a HEAD, which reports the budget.
	m := startMirror(t, siteOptions{block: "tag_ttl 1ns"})
	hub.Counters.Reset()
	pullImage(t, m.Host+"/budget-a:1")
	pullImage(t, m.Host+"/budget-b:1") // the last pull: 0 left
	wantCount(t, "manifest GETs spending the budget", hub.Counters.ManifestGET.Load(), 2)

	hub.Counters.Reset()
	for range 3 {
		wantTooMany(t, "uncached tag while the budget is spent", m.do(t, http.MethodGet, "/v2/budget-c/manifests/1"), 0, 60)
	}
	if got, _ := pullImage(t, m.Host+"/budget-a:1").Digest(); got.String() != a {
		t.Errorf("cached tag while the budget is spent: digest %s, want %s", got, a)
	}
	// The tag moves upstream: its new manifest would cost a pull, so the
	// cached one is served stale.
	_, a2, err := hub.PushImage("library/budget-a", "1", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := pullImage(t, m.Host+"/budget-a:1").Digest(); got.String() != a {
		t.Errorf("moved tag while the budget is spent: digest %s, want the stale %s", got, a)
	}
	wantCount(t, "manifest GETs while the budget is spent", hub.Counters.ManifestGET.Load(), 0)
	wantCount(t, "429s while the budget is spent", hub.Counters.TooMany.Load(), 0)
	if hub.Counters.ManifestHEAD.Load() < 2 {
		t.Errorf("cached tags were not revalidated with HEADs: %s", hub.Counters)
	}

	// The window refills: the next revalidation's HEAD says so.
	hub.SetPullLimit(5)
	hub.Counters.Reset()
	if got, _ := pullImage(t, m.Host+"/budget-a:1").Digest(); got.String() != a2 {
		t.Errorf("moved tag after the refill: digest %s, want %s", got, a2)
	}
	if got, _ := pullImage(t, m.Host+"/budget-c:1").Digest(); got.String() != c {
		t.Errorf("uncached tag after the refill: digest %s, want %s", got, c)
	}
	wantCount(t, "manifest GETs after the refill", hub.Counters.ManifestGET.Load(), 2)
	wantCount(t, "429s after the refill", hub.Counters.TooMany.Load(), 0)
}

// TestUpstream429HoldsGETsAndIsNotCached: an upstream 429 reaches the
// client with its Retry-After, holds the next GETs back without asking the
// hub, and is not remembered: once a HEAD reports budget, the same tag is
// fetched.
func TestUpstream429HoldsGETsAndIsNotCached(t *testing.T) {
	if _, _, err := hub.PushImage("library/toomany-cached", "1", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	_, want, err := hub.PushImage("library/toomany", "1", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "tag_ttl 1ns"})
	pullImage(t, m.Host+"/toomany-cached:1")
	hub.Counters.Reset()
	hub.SetFault(hubtest.Fault{Kind: hubtest.Fault429, Target: hubtest.TargetManifest, Count: 1})
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })

	resp := m.do(t, http.MethodGet, "/v2/toomany/manifests/1")
	if ra := wantTooMany(t, "upstream 429", resp, 0, 7); ra != 7 {
		t.Errorf("the upstream's Retry-After 7 became %d", ra)
	}
	// The hold lasts the probe interval, longer than the Retry-After.
	wantTooMany(t, "held-back GET", m.do(t, http.MethodGet, "/v2/toomany/manifests/1"), 7, 60)
	wantCount(t, "manifest GETs", hub.Counters.ManifestGET.Load(), 1)

	// A revalidation HEAD reports the (unlimited) budget: GETs resume, and
	// the tag that got the 429 is fetched.
	pullImage(t, m.Host+"/toomany-cached:1")
	if got, _ := pullImage(t, m.Host+"/toomany:1").Digest(); got.String() != want {
		t.Errorf("after the 429: digest %s, want %s", got, want)
	}
	wantCount(t, "manifest GETs", hub.Counters.ManifestGET.Load(), 2)
}
