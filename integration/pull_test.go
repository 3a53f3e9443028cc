package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"
)

// pullImage pulls ref through the mirror with go-containerregistry, as a
// new client with no state, and checks every digest of the image.
func pullImage(t *testing.T, image string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		t.Fatalf("parsing %s: %v", image, err)
	}
	img, err := remote.Image(r, remote.WithTransport(http.DefaultTransport.(*http.Transport).Clone()))
	if err != nil {
		t.Fatalf("pulling %s: %v", image, err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validating %s: %v", image, err)
	}
	return img
}

// wantOneDownload fails the test unless the hub sent one blob of size
// bytes once: a download of a large blob asks for its first part, then
// for the rest in one stream or (on a slow link) in fill_connections
// ranges, every byte crossing the link once.
func wantOneDownload(t *testing.T, size int64) {
	t.Helper()
	if n := hub.Counters.CDNGET.Load(); n < 1 || n > 4 {
		t.Errorf("CDN blob GETs = %d, want 1 to 4 (hub counters: %s)", n, hub.Counters)
	}
	wantCount(t, "CDN bytes", hub.Counters.CDNBytes.Load(), size)
}

// wantUpstream fails the test when the hub's counter differs from want.
func wantCount(t *testing.T, what string, got, want int64) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d (hub counters: %s)", what, got, want, hub.Counters)
	}
}

func TestPullSecondTimeFromCache(t *testing.T) {
	const layers = 3
	_, want, err := hub.PushImage("library/busybox", "latest", layers, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()

	// One-component Docker Hub names get library/.
	img := pullImage(t, m.Host+"/busybox:latest")
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("pulled digest %s, want %s", got, want)
	}
	wantCount(t, "cold pull: blob GETs at the CDN", hub.Counters.CDNGET.Load(), layers+1)
	if hub.Counters.ManifestGET.Load() < 1 {
		t.Errorf("cold pull made no manifest GET upstream: %s", hub.Counters)
	}

	hub.Counters.Reset()
	img = pullImage(t, m.Host+"/library/busybox:latest")
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("second pull digest %s, want %s", got, want)
	}
	wantCount(t, "second pull: upstream requests", hub.Counters.Upstream(), 0)
	wantCount(t, "Authorization headers seen by the CDN", hub.Counters.CDNAuthRejected.Load(), 0)
}

func TestPullOCIImageWithNestedName(t *testing.T) {
	_, want, err := hub.PushImage("team/sub/app", "1.0", 2, 256<<10, true)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	img := pullImage(t, m.Host+"/team/sub/app:1.0")
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("pulled digest %s, want %s", got, want)
	}
	mt, err := img.MediaType()
	if err != nil || mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("media type = %q, %v; want the OCI manifest type", mt, err)
	}
	hub.Counters.Reset()
	pullImage(t, m.Host+"/team/sub/app@"+want)
	wantCount(t, "pull by digest after pull by tag: upstream requests", hub.Counters.Upstream(), 0)
}

// copyAll copies an image (every platform of an index) through regclient
// into an OCI layout directory and returns the top manifest's digest.
func copyAll(t *testing.T, mirrorHost, image string) string {
	t.Helper()
	rc := regclient.New(regclient.WithConfigHost(config.Host{Name: mirrorHost, TLS: config.TLSDisabled}))
	src, err := ref.New(image)
	if err != nil {
		t.Fatalf("parsing %s: %v", image, err)
	}
	dst, err := ref.New("ocidir://" + filepath.Join(t.TempDir(), "layout") + ":copy")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := rc.ImageCopy(ctx, src, dst); err != nil {
		t.Fatalf("copying %s: %v", image, err)
	}
	m, err := rc.ManifestHead(ctx, dst)
	if err != nil {
		t.Fatalf("reading copied manifest: %v", err)
	}
	return m.GetDescriptor().Digest.String()
}

func TestPullMultiArch(t *testing.T) {
	platforms := []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}
	for _, tc := range []struct {
		name string
		oci  bool
	}{
		{"docker manifest list", false},
		{"oci index", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "org/multi-docker"
			if tc.oci {
				repo = "org/multi-oci"
			}
			_, want, err := hub.PushIndex(repo, "v1", platforms, tc.oci)
			if err != nil {
				t.Fatal(err)
			}
			m := startMirror(t, siteOptions{})
			hub.Counters.Reset()
			if got := copyAll(t, m.Host, m.Host+"/"+repo+":v1"); got != want {
				t.Errorf("copied index digest %s, want %s", got, want)
			}
			// index + one manifest per platform, each fetched once.
			wantCount(t, "manifest GETs upstream", hub.Counters.ManifestGET.Load(), int64(1+len(platforms)))
			hub.Counters.Reset()
			if got := copyAll(t, m.Host, m.Host+"/"+repo+":v1"); got != want {
				t.Errorf("second copy digest %s, want %s", got, want)
			}
			wantCount(t, "second copy: upstream requests", hub.Counters.Upstream(), 0)
		})
	}
}

// hashBody reads a response body and returns its sha256 digest and size.
func hashBody(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, err
}

func TestLargeBlob(t *testing.T) {
	const size = 256 << 20
	layer, _, err := hub.PushLargeBlobImage("library/big", "latest", size, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	for _, pass := range []string{"cold", "warm"} {
		hub.Counters.Reset()
		r, err := name.ParseReference(m.Host+"/big@"+layer, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		l, err := remote.Layer(r.Context().Digest(layer))
		if err != nil {
			t.Fatalf("%s: layer: %v", pass, err)
		}
		start := time.Now()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("%s: opening layer: %v", pass, err)
		}
		got, n, err := hashBody(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: reading layer: %v", pass, err)
		}
		elapsed := time.Since(start)
		if got != layer || n != size {
			t.Fatalf("%s: got %s (%d bytes), want %s (%d bytes)", pass, got, n, layer, size)
		}
		t.Logf("%s pull of %d MiB: %v, %.0f MiB/s", pass, size>>20, elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds())
		if pass == "warm" {
			wantCount(t, "warm pull: CDN blob GETs", hub.Counters.CDNGET.Load(), 0)
		} else {
			wantOneDownload(t, size)
		}
	}
	// The same warm blob read raw, without hashing on the client, shows
	// what the server side delivers.
	start := time.Now()
	resp := m.do(t, http.MethodGet, "/v2/big/blobs/"+layer)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("raw warm read: %d bytes, %v", n, err)
	}
	t.Logf("raw warm read of %d MiB: %.0f MiB/s", size>>20, float64(size>>20)/time.Since(start).Seconds())
}

func TestConcurrentColdPullsShareOneFetch(t *testing.T) {
	const (
		size    = 64 << 20
		clients = 20
	)
	layer, _, err := hub.PushLargeBlobImage("library/shared", "latest", size, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	hub.Counters.Reset()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := http.Get(m.URL + "/v2/shared/blobs/" + layer)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			got, n, err := hashBody(resp.Body)
			if err != nil || got != layer || n != size {
				errs <- fmt.Errorf("got %s (%d bytes, %v), want %s", got, n, err, layer)
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d clients x %d MiB cold: %v wall", clients, size>>20, time.Since(began).Round(time.Millisecond))
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantOneDownload(t, size)
}

// rawBlob reads a blob straight from the hub's registry, bypassing the front.
func rawBlob(t *testing.T, repo, dgst string) []byte {
	t.Helper()
	resp, err := http.Get(hub.RegistryURL + "/v2/" + repo + "/blobs/" + dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reading blob from the registry: %d %v", resp.StatusCode, err)
	}
	return b
}

func TestRangeOnMissAndHit(t *testing.T) {
	const size = 8 << 20
	layer, _, err := hub.PushLargeBlobImage("library/ranged", "latest", size, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := rawBlob(t, "library/ranged", layer)
	m := startMirror(t, siteOptions{})

	check := func(pass string, from, to int) {
		t.Helper()
		resp := m.do(t, http.MethodGet, "/v2/ranged/blobs/"+layer, fmt.Sprintf("Range: bytes=%d-%d", from, to))
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: reading range: %v", pass, err)
		}
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("%s: status %d, want 206", pass, resp.StatusCode)
		}
		if cr, wantCR := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", from, to, size); cr != wantCR {
			t.Errorf("%s: Content-Range %q, want %q", pass, cr, wantCR)
		}
		if string(body) != string(want[from:to+1]) {
			t.Errorf("%s: range bytes differ from the blob's", pass)
		}
	}
	hub.Counters.Reset()
	check("miss", size-5000, size-1000)
	wantCount(t, "miss: CDN blob GETs", hub.Counters.CDNGET.Load(), 1)

	// A whole GET joins or follows the fill, after which the blob is cached.
	resp := m.do(t, http.MethodGet, "/v2/ranged/blobs/"+layer)
	got, _, err := hashBody(resp.Body)
	resp.Body.Close()
	if err != nil || got != layer {
		t.Fatalf("whole blob: %s %v", got, err)
	}
	hub.Counters.Reset()
	check("hit", 1000, 1999)
	wantCount(t, "hit: upstream requests", hub.Counters.Upstream(), 0)
}

func TestExpiredTokenIsRenewed(t *testing.T) {
	_, first, err := hub.PushImage("library/tokens", "one", 1, 1024, false)
	if err != nil {
		t.Fatal(err)
	}
	_, second, err := hub.PushImage("library/tokens", "two", 1, 1024, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	pullImage(t, m.Host+"/tokens@"+first)
	hub.ExpireTokens()
	hub.Counters.Reset()
	img := pullImage(t, m.Host+"/tokens:two")
	if got, _ := img.Digest(); got.String() != second {
		t.Errorf("digest after token renewal %s, want %s", got, second)
	}
	if hub.Counters.Unauthorized.Load() < 1 || hub.Counters.Tokens.Load() < 1 {
		t.Errorf("expected a 401 for the expired token and a new token: %s", hub.Counters)
	}
}

func TestTagRevalidation(t *testing.T) {
	_, first, err := hub.PushImage("library/moving", "stable", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "tag_ttl 1ns"})
	pullImage(t, m.Host+"/moving:stable")

	hub.Counters.Reset()
	img := pullImage(t, m.Host+"/moving:stable")
	if got, _ := img.Digest(); got.String() != first {
		t.Errorf("digest %s, want %s", got, first)
	}
	wantCount(t, "unchanged tag: manifest HEADs", hub.Counters.ManifestHEAD.Load(), 1)
	wantCount(t, "unchanged tag: manifest GETs", hub.Counters.ManifestGET.Load(), 0)
	wantCount(t, "unchanged tag: CDN GETs", hub.Counters.CDNGET.Load(), 0)

	_, second, err := hub.PushImage("library/moving", "stable", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	hub.Counters.Reset()
	img = pullImage(t, m.Host+"/moving:stable")
	if got, _ := img.Digest(); got.String() != second {
		t.Errorf("moved tag: digest %s, want %s", got, second)
	}
	wantCount(t, "moved tag: manifest HEADs", hub.Counters.ManifestHEAD.Load(), 1)
	wantCount(t, "moved tag: manifest GETs", hub.Counters.ManifestGET.Load(), 1)
}

func TestRestartKeepsCache(t *testing.T) {
	_, want, err := hub.PushImage("library/persist", "1", 2, 64<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	pullImage(t, m.Host+"/persist:1")
	if err := caddy.Stop(); err != nil { // as a process exit would
		t.Fatal(err)
	}
	hub.Counters.Reset()
	m2 := startMirror(t, siteOptions{storage: m.Storage})
	img := pullImage(t, m2.Host+"/persist:1")
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("digest after restart %s, want %s", got, want)
	}
	wantCount(t, "after restart: upstream requests", hub.Counters.Upstream(), 0)
}
