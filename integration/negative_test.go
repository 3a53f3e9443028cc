package integration

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNegativeAnswersAreRemembered: a missing tag or digest asked twice
// costs the hub one request; once negative_ttl has passed, a tag pushed
// meanwhile is served.
func TestNegativeAnswersAreRemembered(t *testing.T) {
	const ttl = 200 * time.Millisecond
	// The hub outlives a test: a fresh repository keeps -count=N honest.
	name := "negative-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, _, err := hub.PushImage("library/"+name, "other", 1, 1024, false); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "negative_ttl " + ttl.String()})
	missing := "sha256:" + strings.Repeat("cd", 32)
	tests := []struct {
		name, method, path string
		code               string // "" for a HEAD, whose answer has no body
	}{
		{"missing tag", http.MethodGet, "/v2/" + name + "/manifests/1", "MANIFEST_UNKNOWN"},
		{"missing digest", http.MethodGet, "/v2/" + name + "/manifests/" + missing, "MANIFEST_UNKNOWN"},
		{"missing tag by HEAD", http.MethodHead, "/v2/" + name + "/manifests/2", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub.Counters.Reset()
			for range 3 {
				resp := m.do(t, tc.method, tc.path)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), tc.code) {
					t.Errorf("status %d %s, want 404 %s", resp.StatusCode, body, tc.code)
				}
			}
			wantCount(t, "manifest requests upstream", hub.Counters.ManifestGET.Load()+hub.Counters.ManifestHEAD.Load(), 1)
		})
	}

	_, want, err := hub.PushImage("library/"+name, "1", 1, 1024, false)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 100*time.Millisecond) // let the remembered 404 expire
	if got, _ := pullImage(t, m.Host+"/"+name+":1").Digest(); got.String() != want {
		t.Errorf("tag pushed after its 404: digest %s, want %s", got, want)
	}
}

// TestNegativeTTLOff: with negative_ttl off, every request asks the hub.
func TestNegativeTTLOff(t *testing.T) {
	m := startMirror(t, siteOptions{block: "negative_ttl off"})
	hub.Counters.Reset()
	for range 3 {
		resp := m.do(t, http.MethodGet, "/v2/negative-off/manifests/1")
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
	}
	wantCount(t, "manifest GETs upstream", hub.Counters.ManifestGET.Load(), 3)
}
