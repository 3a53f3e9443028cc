package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// TestRoutingByNsPrefixAndDefault serves one repository of the hub as two
// registries and reaches it by containerd's ns parameter, by a registry
// host leading the path, and by the default upstream.
func TestRoutingByNsPrefixAndDefault(t *testing.T) {
	_, want, err := hub.PushImage("org/routed", "1", 1, 2048, true)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io %s\n\t\tupstream ghcr.io %s", hub.URL, hub.URL)})
	for _, tc := range []struct{ name, path string }{
		{"default upstream", "/v2/org/routed/manifests/1"},
		{"ns parameter", "/v2/org/routed/manifests/1?ns=ghcr.io"},
		{"ns alias of docker hub", "/v2/org/routed/manifests/1?ns=registry-1.docker.io"},
		{"path prefix", "/v2/ghcr.io/org/routed/manifests/1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := m.do(t, http.MethodGet, tc.path, "Accept: application/vnd.oci.image.manifest.v1+json")
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want {
				t.Errorf("status %d, digest %q; want 200, %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), want)
			}
		})
	}
	img := pullImage(t, m.Host+"/ghcr.io/org/routed:1")
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("pull by path prefix: digest %s, want %s", got, want)
	}
}

// TestDeadFirstEndpointIsSkipped lists a closed port before the hub.
func TestDeadFirstEndpointIsSkipped(t *testing.T) {
	_, want, err := hub.PushImage("library/failover", "1", 1, 2048, false)
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)) // nothing listens there
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io {\n\t\t\turl %s\n\t\t\turl %s\n\t\t}", dead, hub.URL)})
	img := pullImage(t, m.Host+"/failover:1")
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("digest %s, want %s", got, want)
	}
}

// TestReferrersFromTagSchema: the hub, like Docker Hub, has no referrers
// API; the mirror answers from the sha256-<hex> tag of the referrers tag
// schema, filters by artifactType, and answers an empty index otherwise.
func TestReferrersFromTagSchema(t *testing.T) {
	_, subject, err := hub.PushImage("library/signed", "1", 1, 1024, true)
	if err != nil {
		t.Fatal(err)
	}
	sig, sigDigest, err := hub.PushImage("library/signed", "sig", 1, 256, true)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sig.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	const sigType = "application/vnd.dev.cosign.artifact.sig.v1+json"
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sigDigest,
			"size": len(raw), "artifactType": sigType,
		}},
	})
	tag := strings.Replace(subject, ":", "-", 1)
	req, _ := http.NewRequest(http.MethodPut, hub.RegistryURL+"/v2/library/signed/manifests/"+tag, bytes.NewReader(index))
	req.Header.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("pushing the referrers tag: %v %v", err, resp.Status)
	}
	resp.Body.Close()

	m := startMirror(t, siteOptions{})
	_, other, err := hub.PushImage("library/signed", "unsigned", 1, 512, true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, filtered string
		want                 []string
	}{
		{"all referrers", "/v2/signed/referrers/" + subject, "", []string{sigDigest}},
		{"matching filter", "/v2/signed/referrers/" + subject + "?artifactType=" + url.QueryEscape(sigType), "artifactType", []string{sigDigest}},
		{"other filter", "/v2/signed/referrers/" + subject + "?artifactType=application/x-sbom", "artifactType", nil},
		{"no referrers", "/v2/signed/referrers/" + other, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := m.do(t, http.MethodGet, tc.path)
			defer resp.Body.Close()
			var idx struct {
				MediaType string `json:"mediaType"`
				Manifests []struct {
					Digest string `json:"digest"`
				} `json:"manifests"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			var got []string
			for _, d := range idx.Manifests {
				got = append(got, d.Digest)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || idx.MediaType != "application/vnd.oci.image.index.v1+json" {
				t.Errorf("referrers %v (%s), want %v", got, idx.MediaType, tc.want)
			}
			if h := resp.Header.Get("OCI-Filters-Applied"); h != tc.filtered {
				t.Errorf("OCI-Filters-Applied %q, want %q", h, tc.filtered)
			}
		})
	}
}

// TestMirrorOfMirrorKeepsRouting chains an office mirror behind a regional
// one. The regional mirror reaches ghcr.io at the hub and has no working
// Docker Hub, so the office mirror's pull of a ghcr.io image succeeds only
// if the regional mirror sees the request as ghcr.io's (the office mirror
// sends containerd's ns parameter to an endpoint that is not the registry
// itself). A second office pull is served by the office cache alone, and
// an image pulled by one office is served by the regional cache to another.
func TestMirrorOfMirrorKeepsRouting(t *testing.T) {
	_, want, err := hub.PushImage("owner/chained", "1", 2, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)) // nothing listens there
	dir := t.TempDir()
	regional, office, office2 := freePort(t), freePort(t), freePort(t)
	loadCaddyfile(t, caddyGlobals(filepath.Join(dir, "caddy-data"))+fmt.Sprintf(`
http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	registry_cache {
		storage %[1]s/regional
		upstream docker.io %[5]s
		upstream ghcr.io %[6]s
	}
}

http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	registry_cache {
		storage %[1]s/office
		upstream docker.io http://127.0.0.1:%[2]d
		upstream ghcr.io http://127.0.0.1:%[2]d
	}
}

http://127.0.0.1:%[4]d {
	bind 127.0.0.1
	registry_cache {
		storage %[1]s/office2
		upstream ghcr.io http://127.0.0.1:%[2]d
	}
}
`, dir, regional, office, office2, dead, hub.URL))
	for _, pass := range []struct {
		name     string
		port     int
		upstream int64 // requests the hub should see
	}{
		{"cold", office, -1},
		{"warm office", office, 0},
		{"second office", office2, 0},
	} {
		hub.Counters.Reset()
		img := pullImage(t, fmt.Sprintf("127.0.0.1:%d/ghcr.io/owner/chained:1", pass.port))
		if got, _ := img.Digest(); got.String() != want {
			t.Errorf("%s: digest %s, want %s", pass.name, got, want)
		}
		if pass.upstream < 0 {
			if hub.Counters.ManifestGET.Load() == 0 {
				t.Errorf("%s: the hub saw no manifest GET: %s", pass.name, hub.Counters)
			}
			continue
		}
		wantCount(t, pass.name+": upstream requests", hub.Counters.Upstream(), pass.upstream)
	}
	// A Docker Hub name through the office goes to the regional mirror's
	// Docker Hub, which is down: an error, not ghcr.io's image.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v2/owner/chained/manifests/1", office))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("docker.io name answered 200 through a regional mirror whose Docker Hub is down")
	}
}
