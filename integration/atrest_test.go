package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// storedPath is where the cache in storage keeps the content of d.
func storedPath(storage string, d v1.Hash) string {
	return filepath.Join(storage, "blobs", d.Algorithm, d.Hex)
}

// flipStoredByte flips one bit in the middle of d's file in the cache, as
// bit rot would.
func flipStoredByte(t *testing.T, storage string, d v1.Hash) {
	t.Helper()
	path := storedPath(storage, d)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the cached %s: %v", d, err)
	}
	data[len(data)/2] ^= 0x10
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// storedIntact reports whether d is stored and its file hashes to d.
func storedIntact(storage string, d v1.Hash) bool {
	data, err := os.ReadFile(storedPath(storage, d))
	if err != nil {
		return false
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]) == d.Hex
}

// storedAbsent reports whether d's file is gone from the cache.
func storedAbsent(storage string, d v1.Hash) bool {
	_, err := os.Stat(storedPath(storage, d))
	return errors.Is(err, os.ErrNotExist)
}

// getWholeBlob GETs a whole blob from the mirror and reports whether the
// response ended cleanly, with its status and body.
func getWholeBlob(t *testing.T, m *mirrorSite, repo string, d v1.Hash) (status int, body []byte, clean bool) {
	t.Helper()
	resp := m.do(t, http.MethodGet, "/v2/"+repo+"/blobs/"+d.String())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err == nil
}

// wantNoCleanWrongBlob fails the test when a GET of d ends cleanly with
// a 200 and bytes that do not hash to d.
func wantNoCleanWrongBlob(t *testing.T, what string, m *mirrorSite, repo string, d v1.Hash) (status int, clean bool) {
	t.Helper()
	status, body, clean := getWholeBlob(t, m, repo, d)
	sum := sha256.Sum256(body)
	if status == http.StatusOK && clean && hex.EncodeToString(sum[:]) != d.Hex {
		t.Errorf("%s: a clean 200 with %d wrong bytes for %s", what, len(body), d)
	}
	return status, clean
}

// TestFirstReadAfterRestartFindsCorruption flips a byte of a cached layer
// and of the cached manifest while the mirror is stopped. After the
// restart (a new config load on the same storage), the manifest is
// checked as it is read from disk and fetched again, the layer's first
// GET is hashed as it is sent and aborted before its end, and the next
// pulls (go-containerregistry, crane) get the right digests and repair the
// cache.
func TestFirstReadAfterRestartFindsCorruption(t *testing.T) {
	img, want, err := hub.PushImage("library/atrest-restart", "1", 2, 300<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	pullImage(t, m.Host+"/atrest-restart:1")
	layer := firstLayer(t, img)
	manifest, err := v1.NewHash(want)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	flipStoredByte(t, m.Storage, layer)
	flipStoredByte(t, m.Storage, manifest)

	m = startMirror(t, siteOptions{storage: m.Storage})
	hub.Counters.Reset()
	// The manifest by digest: right bytes, fetched again.
	resp := m.do(t, http.MethodGet, "/v2/atrest-restart/manifests/"+want,
		"Accept: application/vnd.docker.distribution.manifest.v2+json")
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(body)
	if resp.StatusCode != http.StatusOK || rerr != nil || "sha256:"+hex.EncodeToString(sum[:]) != want {
		t.Errorf("manifest after restart: %d, %v, content sha256:%x; want %s", resp.StatusCode, rerr, sum, want)
	}
	wantCount(t, "manifest GETs upstream after the flipped manifest was read", hub.Counters.ManifestGET.Load(), 1)
	if !storedIntact(m.Storage, manifest) {
		t.Errorf("the manifest is not stored intact again")
	}
	// The layer's first read is hashed and aborted.
	status, clean := wantNoCleanWrongBlob(t, "first read of the flipped layer", m, "library/atrest-restart", layer)
	if status == http.StatusOK && clean {
		t.Errorf("the first read of the flipped layer ended cleanly")
	}
	if !storedAbsent(m.Storage, layer) {
		t.Errorf("the flipped layer is still stored after its first read")
	}
	// Never again a clean wrong 200: the next GET fetches it again.
	if status, clean := wantNoCleanWrongBlob(t, "second read", m, "library/atrest-restart", layer); status != http.StatusOK || !clean {
		t.Errorf("second read of the layer: %d, clean %v; want a clean 200", status, clean)
	}
	img2 := pullImage(t, m.Host+"/atrest-restart:1")
	if got, _ := img2.Digest(); got.String() != want {
		t.Errorf("pull after the repair: %s, want %s", got, want)
	}
	crane := clientBinary(t, "crane")
	runClient(t, crane, "pull", "--insecure", "--format", "oci", m.Host+"/atrest-restart:1", filepath.Join(t.TempDir(), "oci"))
	if !storedIntact(m.Storage, layer) {
		t.Errorf("the layer is not stored intact after the pulls")
	}
}

// TestScrubFindsCorruption flips a byte of a cached layer while the
// mirror runs; the background scrub (every second here) removes it, and
// the next pull fetches it again.
func TestScrubFindsCorruption(t *testing.T) {
	img, want, err := hub.PushImage("library/atrest-scrub", "1", 2, 300<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{block: "scrub_interval 1s\n\t\tscrub_rate 512MiB/s"})
	pullImage(t, m.Host+"/atrest-scrub:1")
	layer := firstLayer(t, img)
	flipStoredByte(t, m.Storage, layer)
	waitUntil(t, "the scrub removing the flipped layer", func() bool { return storedAbsent(m.Storage, layer) })
	wantNoCleanWrongBlob(t, "read after the scrub", m, "library/atrest-scrub", layer)
	got := pullImage(t, m.Host+"/atrest-scrub:1")
	if d, _ := got.Digest(); d.String() != want {
		t.Errorf("pull after the scrub: %s, want %s", d, want)
	}
	if !storedIntact(m.Storage, layer) {
		t.Errorf("the layer is not stored intact after the pull")
	}
}

// verifyAnswer is the part of POST /registry_cache/verify's answer the
// tests read.
type verifyAnswer struct {
	Caches []struct {
		Storage string `json:"storage"`
		Objects int64  `json:"objects"`
		Corrupt []struct {
			Digest  string `json:"digest"`
			Removed bool   `json:"removed"`
		} `json:"corrupt"`
	} `json:"caches"`
}

// TestVerifyFindsCorruption runs the on-demand check through the admin
// API and the command line, against the running instance and against the
// storage directory of a stopped one.
func TestVerifyFindsCorruption(t *testing.T) {
	img, want, err := hub.PushImage("library/atrest-verify", "1", 3, 200<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(t.TempDir(), "cache")
	host, admin := startAdminMirror(t, storage)
	m := &mirrorSite{Host: host, URL: "http://" + host, Storage: storage}
	pullImage(t, host+"/atrest-verify:1")
	layers, err := img.Layers()
	if err != nil || len(layers) != 3 {
		t.Fatalf("layers: %v", err)
	}
	digests := make([]v1.Hash, len(layers))
	for i, l := range layers {
		digests[i], _ = l.Digest()
	}
	caddyCmd := func(args ...string) (string, error) {
		cmd := exec.Command(os.Args[0], append([]string{"registry-cache"}, args...)...)
		cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	address := strings.TrimPrefix(admin, "http://")

	for _, bad := range []struct {
		method, body string
		want         int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, `{"rate": -1}`, http.StatusBadRequest},
		{http.MethodPost, `{"repair": "yes"}`, http.StatusBadRequest},
		{http.MethodPost, `{"storage": "/no/such/cache"}`, http.StatusNotFound},
	} {
		if code := adminJSON(t, bad.method, admin+"/registry_cache/verify", bad.body, nil); code != bad.want {
			t.Errorf("%s /registry_cache/verify %s: %d, want %d", bad.method, bad.body, code, bad.want)
		}
	}
	// The admin API without repair reports and leaves the file.
	flipStoredByte(t, storage, digests[0])
	var ans verifyAnswer
	if code := adminJSON(t, http.MethodPost, admin+"/registry_cache/verify", `{}`, &ans); code != http.StatusOK {
		t.Fatalf("POST /registry_cache/verify: %d", code)
	}
	if len(ans.Caches) != 1 || len(ans.Caches[0].Corrupt) != 1 || ans.Caches[0].Corrupt[0].Digest != digests[0].String() ||
		ans.Caches[0].Corrupt[0].Removed || ans.Caches[0].Objects < 5 {
		t.Errorf("verify answer %+v; want %s reported, not removed", ans, digests[0])
	}
	if storedAbsent(storage, digests[0]) {
		t.Errorf("verify without repair removed the file")
	}
	// Found, it is never served as a clean 200: its next read is hashed.
	if status, clean := wantNoCleanWrongBlob(t, "read after verify", m, "library/atrest-verify", digests[0]); status == http.StatusOK && clean {
		t.Errorf("the reported layer was served cleanly")
	}

	// The command line: without --repair it fails and names the object;
	// with it, the object goes.
	flipStoredByte(t, storage, digests[1])
	out, err := caddyCmd("verify", "--address", address)
	if err == nil || !strings.Contains(out, "CORRUPT "+digests[1].String()) || !strings.Contains(out, "left in place") {
		t.Errorf("verify: %v, want a failure naming %s\n%s", err, digests[1], out)
	}
	out, err = caddyCmd("verify", "--repair", "--address", address)
	if err != nil || !strings.Contains(out, "CORRUPT "+digests[1].String()) || !strings.Contains(out, "removed") {
		t.Errorf("verify --repair: %v\n%s", err, out)
	}
	if !storedAbsent(storage, digests[1]) {
		t.Errorf("verify --repair left the corrupt file")
	}
	series := scrape(t, admin+"/metrics")
	if v := series[fmt.Sprintf(`caddy_registry_cache_corrupt_objects_total{storage=%q}`, storage)]; v != 2 {
		t.Errorf("caddy_registry_cache_corrupt_objects_total = %v, want 2", v)
	}
	var stats struct {
		Caches []struct {
			Integrity struct {
				CorruptObjects int64 `json:"corrupt_objects"`
			} `json:"integrity"`
		} `json:"caches"`
	}
	if adminJSON(t, http.MethodGet, admin+"/registry_cache/stats", "", &stats); len(stats.Caches) != 1 || stats.Caches[0].Integrity.CorruptObjects != 2 {
		t.Errorf("stats integrity %+v, want 2 corrupt objects", stats)
	}
	page := getBody(t, admin+"/registry_cache/")
	if !strings.Contains(page, "2 corrupt objects") {
		t.Errorf("the status page does not show the corrupt objects")
	}
	got := pullImage(t, host+"/atrest-verify:1")
	if d, _ := got.Digest(); d.String() != want {
		t.Errorf("pull after repair: %s, want %s", d, want)
	}

	// A stopped instance: the command opens the storage directory itself.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	flipStoredByte(t, storage, digests[2])
	out, err = caddyCmd("verify", "--repair", "--storage", storage, "--address", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if err != nil || !strings.Contains(out, "cache "+storage) || !strings.Contains(out, "CORRUPT "+digests[2].String()) {
		t.Errorf("verify --repair --storage of a stopped cache: %v\n%s", err, out)
	}
	if !storedAbsent(storage, digests[2]) {
		t.Errorf("verify --repair --storage left the corrupt file")
	}
	for i, d := range digests {
		if !storedAbsent(storage, d) && !storedIntact(storage, d) {
			t.Errorf("layer %d is stored corrupt after the checks", i)
		}
	}
	host, _ = startAdminMirror(t, storage)
	got = pullImage(t, host+"/atrest-verify:1")
	if d, _ := got.Digest(); d.String() != want {
		t.Errorf("pull after the offline repair: %s, want %s", d, want)
	}
	if !storedIntact(storage, digests[2]) {
		t.Errorf("the layer repaired offline is not stored intact after the pull")
	}
}
