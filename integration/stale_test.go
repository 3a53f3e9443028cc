package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestStaleTagServedWhenUpstreamFails: once a tag's TTL has passed, an
// upstream that refuses connections, answers 503 or 429 does not stop a
// pull of a cached image; with stale_if_error spent, the failure surfaces.
func TestStaleTagServedWhenUpstreamFails(t *testing.T) {
	_, want, err := hub.PushImage("library/outage", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "tag_ttl 1ns"})
	pullImage(t, m.Host+"/outage:1")
	for _, kind := range []hubtest.FaultKind{hubtest.Fault503, hubtest.Fault429, hubtest.FaultRefuse} {
		t.Run(kind.String(), func(t *testing.T) {
			hub.Counters.Reset()
			hub.SetFault(hubtest.Fault{Kind: kind, Target: hubtest.TargetAll})
			defer hub.SetFault(hubtest.Fault{})
			img := pullImage(t, m.Host+"/outage:1")
			if got, _ := img.Digest(); got.String() != want {
				t.Errorf("stale digest %s, want %s", got, want)
			}
			if hub.Counters.Upstream() == 0 {
				t.Errorf("the stale tag was not revalidated at all: %s", hub.Counters)
			}
		})
	}
}

func TestStaleLimitSpent(t *testing.T) {
	if _, _, err := hub.PushImage("library/outage2", "1", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "tag_ttl 1ns\n\t\tstale_if_error 1ns"})
	pullImage(t, m.Host+"/outage2:1")
	hub.SetFault(hubtest.Fault{Kind: hubtest.Fault503, Target: hubtest.TargetAll})
	defer hub.SetFault(hubtest.Fault{})
	resp := m.do(t, http.MethodGet, "/v2/outage2/manifests/1")
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("revalidation failed past stale_if_error: status %d, want 502", resp.StatusCode)
	}
	r, _ := name.ParseReference(m.Host+"/outage2:1", name.Insecure)
	if _, err := remote.Image(r); err == nil {
		t.Errorf("a client pulled a tag past its stale_if_error limit")
	}
}

// TestBrokenManifestBodyServedStale: a moved tag whose new manifest's body
// breaks off mid-transfer (cut, reset or never sent) is served stale, and a
// tag nothing cached answers 502 UNAVAILABLE, never 500.
func TestBrokenManifestBodyServedStale(t *testing.T) {
	_, old, err := hub.PushImage("library/cutmanifest", "1", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "tag_ttl 1ns\n\t\tnegative_ttl off"})
	pullImage(t, m.Host+"/cutmanifest:1")
	if _, _, err := hub.PushImage("library/cutmanifest", "1", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hub.PushImage("library/cutmanifest", "2", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []hubtest.FaultKind{hubtest.FaultTruncate, hubtest.FaultNoBody, hubtest.FaultCorrupt} {
		t.Run(kind.String(), func(t *testing.T) {
			hub.SetFault(hubtest.Fault{Kind: kind, Target: hubtest.TargetManifest})
			defer hub.SetFault(hubtest.Fault{})
			resp := m.do(t, http.MethodGet, "/v2/cutmanifest/manifests/2")
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"UNAVAILABLE"`) {
				t.Errorf("uncached tag with a broken body: %d %s, want 502 UNAVAILABLE", resp.StatusCode, body)
			}
			resp = m.do(t, http.MethodGet, "/v2/cutmanifest/manifests/1")
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := resp.Header.Get("Docker-Content-Digest"); resp.StatusCode != http.StatusOK || got != old {
				t.Errorf("cached tag with a broken new manifest: %d %s %s, want 200 %s served stale", resp.StatusCode, got, body, old)
			}
		})
	}
}
