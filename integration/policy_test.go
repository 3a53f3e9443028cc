package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/oci"
)

// cosignKey is a key pair made by cosign generate-key-pair.
type cosignKey struct {
	private, public string
}

// newCosignKey makes a key pair with the real cosign CLI.
func newCosignKey(t *testing.T, cosign string) cosignKey {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(cosign, "generate-key-pair")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return cosignKey{private: filepath.Join(dir, "cosign.key"), public: filepath.Join(dir, "cosign.pub")}
}

// cosignSign signs repo@digest in the hub's registry with cosign, offline
// (no transparency log), as a publisher pushing to its own registry does.
// extra are further flags (--new-bundle-format).
func cosignSign(t *testing.T, cosign string, key cosignKey, repo, dgst string, extra ...string) {
	t.Helper()
	host := strings.TrimPrefix(hub.RegistryURL, "http://")
	args := append([]string{"sign", "--yes", "--key", key.private, "--tlog-upload=false", "--allow-insecure-registry"}, extra...)
	args = append(args, host+"/"+repo+"@"+dgst)
	cmd := exec.Command(cosign, args...)
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=test", "DOCKER_CONFIG="+t.TempDir(), "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// policyImage is an image pushed for the policy tests.
type policyImage struct {
	repo, tag, digest string
}

// pushPolicyImage pushes a one-layer image of layerSize bytes.
func pushPolicyImage(t *testing.T, repo, tag string, layerSize int64) policyImage {
	t.Helper()
	_, d, err := hub.PushImage(repo, tag, 1, layerSize, true)
	if err != nil {
		t.Fatal(err)
	}
	return policyImage{repo: repo, tag: tag, digest: d}
}

// wantDenied asserts a 403 DENIED whose message contains each of want.
func wantDenied(t *testing.T, what string, resp *http.Response, want ...string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	items := oci.ParseErrorBody(body)
	if resp.StatusCode != http.StatusForbidden || len(items) == 0 || items[0].Code != oci.CodeDenied {
		t.Errorf("%s: %d %.300s; want 403 DENIED", what, resp.StatusCode, body)
		return
	}
	for _, w := range want {
		if !strings.Contains(items[0].Message, w) {
			t.Errorf("%s: message %q does not say %q", what, items[0].Message, w)
		}
	}
}

// TestPolicySignedImagesOnly signs images with the real cosign CLI in the
// upstream registry and pulls them through a mirror whose policy demands a
// signature by one key: an image signed with it (a cosign .sig tag, or a
// sigstore bundle among its referrers) pulls with crane, one unsigned or
// signed by another key is refused with 403 naming the rule and the
// reason, and the refused clients get no layer bytes. A rule in audit mode
// serves and counts.
func TestPolicySignedImagesOnly(t *testing.T) {
	cosign := clientBinary(t, "cosign")
	crane := clientBinary(t, "crane")
	const layerSize = 256 << 10
	trusted, other := newCosignKey(t, cosign), newCosignKey(t, cosign)
	signed := pushPolicyImage(t, "acme/signed", "1", layerSize)
	bundled := pushPolicyImage(t, "acme/bundled", "1", layerSize)
	unsigned := pushPolicyImage(t, "acme/unsigned", "1", layerSize)
	otherKey := pushPolicyImage(t, "acme/otherkey", "1", layerSize)
	audited := pushPolicyImage(t, "audit/unsigned", "1", layerSize)
	cosignSign(t, cosign, trusted, signed.repo, signed.digest)
	cosignSign(t, cosign, trusted, bundled.repo, bundled.digest, "--new-bundle-format")
	cosignSign(t, cosign, other, otherKey.repo, otherKey.digest)

	dir := t.TempDir()
	port := freePort(t)
	loadCaddyfile(t, caddyGlobals(filepath.Join(dir, "caddy-data"))+fmt.Sprintf(`
http://127.0.0.1:%d {
	bind 127.0.0.1
	metrics /metrics
	registry_cache {
		storage %s
		upstream docker.io %s
		verify docker.io/acme/** {
			key %s
		}
		verify docker.io/audit/* {
			key %s
			mode audit
		}
	}
}
`, port, filepath.Join(dir, "cache"), hub.URL, trusted.public, trusted.public))
	m := &mirrorSite{Host: fmt.Sprintf("127.0.0.1:%d", port), URL: fmt.Sprintf("http://127.0.0.1:%d", port)}

	for _, img := range []policyImage{signed, bundled, audited} {
		out := filepath.Join(t.TempDir(), "image.tar")
		runClient(t, crane, "pull", "--insecure", m.Host+"/"+img.repo+":"+img.tag, out)
		if got := runClient(t, crane, "digest", "--insecure", m.Host+"/"+img.repo+":"+img.tag); got != img.digest {
			t.Errorf("%s: crane digest %s through the mirror, want %s", img.repo, got, img.digest)
		}
	}

	refused := []struct {
		img    policyImage
		reason string
	}{
		{unsigned, "no signature found"},
		{otherKey, "does not verify with any configured key"},
	}
	for _, tc := range refused {
		hub.Counters.Reset()
		for _, path := range []string{"/v2/" + tc.img.repo + "/manifests/" + tc.img.tag, "/v2/" + tc.img.repo + "/manifests/" + tc.img.digest} {
			wantDenied(t, tc.img.repo+" "+path, m.do(t, http.MethodGet, path, "Accept: "+oci.AcceptHeader(oci.ManifestMediaTypes)),
				"verify#1", tc.reason)
		}
		cmd := exec.Command(crane, "pull", "--insecure", m.Host+"/"+tc.img.repo+":"+tc.img.tag, filepath.Join(t.TempDir(), "x.tar"))
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "DENIED") {
			t.Errorf("crane pull of %s: %v, %s; want a DENIED failure", tc.img.repo, err, out)
		}
		// Only the signature payload (a few hundred bytes) may have come
		// from the CDN: no layer bytes.
		if n := hub.Counters.CDNBytes.Load(); n >= layerSize {
			t.Errorf("refused pull of %s: the CDN sent %d bytes, a layer's worth", tc.img.repo, n)
		}
		if tc.img == unsigned && hub.Counters.CDNBytes.Load() != 0 {
			t.Errorf("refused pull of the unsigned image: the CDN sent %d bytes, want none", hub.Counters.CDNBytes.Load())
		}
	}

	series := scrape(t, m.URL+"/metrics")
	count := func(rule, action string) float64 {
		for key, v := range series {
			if strings.HasPrefix(key, "caddy_registry_cache_policy_refusals_total{") &&
				strings.Contains(key, `rule="`+rule+`"`) && strings.Contains(key, `action="`+action+`"`) {
				return v
			}
		}
		t.Errorf("no policy_refusals_total series for %s %s", rule, action)
		return 0
	}
	if got := count("verify#1", "denied"); got < 4 {
		t.Errorf("verify#1 refusals = %v, want at least 4", got)
	}
	if got := count("verify#2", "audited"); got < 1 {
		t.Errorf("verify#2 audited = %v, want at least 1", got)
	}
	if got := count("verify#2", "denied"); got != 0 {
		t.Errorf("verify#2 (audit) refused %v requests", got)
	}
	for key := range series {
		if strings.Contains(key, "policy_refusals") && (strings.Contains(key, "acme") || strings.Contains(key, "sha256")) {
			t.Errorf("a policy metric carries a repository or digest: %s", key)
		}
	}
}

// TestPolicyDenyRules reloads a mirror that cached an image with a deny
// rule for it: the cached image is refused at once without asking the
// upstream (manifest, blob, tags), and the catalog no longer lists it. A
// blocked digest is refused under every repository and tag, and an allow
// list refuses what it does not name.
func TestPolicyDenyRules(t *testing.T) {
	forbidden := pushPolicyImage(t, "library/forbidden", "1", 4096)
	pushPolicyImage(t, "library/kept", "1", 4096)
	for _, tag := range []string{"2-rc1", "2"} {
		if _, _, err := hub.PushImage("library/kept", tag, 1, 512, true); err != nil {
			t.Fatal(err)
		}
	}
	// One image under two repositories and two tags.
	img, blockedDigest, err := hub.PushImage("org/blocked", "a", 1, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"org/blocked:b", "org/elsewhere:c"} {
		repo, tag, _ := strings.Cut(ref, ":")
		ref, err := name.ParseReference(strings.TrimPrefix(hub.RegistryURL, "http://")+"/"+repo+":"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}

	m := startMirror(t, siteOptions{})
	pullImage(t, m.Host+"/forbidden:1")
	pullImage(t, m.Host+"/kept:1")
	if got := listPages(t, m, "/v2/_catalog", "repositories", 1000); !strings.Contains(strings.Join(got, ","), "library/forbidden") {
		t.Fatalf("catalog before the rule: %v", got)
	}

	m = startMirror(t, siteOptions{storage: m.Storage, port: portOf(t, m), block: "deny docker.io/library/forbidden docker.io/*/*:*-rc*\n\t\tdeny_digest " + blockedDigest})
	hub.Counters.Reset()
	for _, path := range []string{"/v2/forbidden/manifests/1", "/v2/library/forbidden/manifests/" + forbidden.digest, "/v2/forbidden/tags/list"} {
		wantDenied(t, path, m.do(t, http.MethodGet, path), "deny#1", "docker.io/library/forbidden")
	}
	wantDenied(t, "rc tag", m.do(t, http.MethodGet, "/v2/kept/manifests/2-rc1"), "deny#2")
	wantCount(t, "upstream requests for denied requests", hub.Counters.Upstream(), 0)
	pullImage(t, m.Host+"/kept:1")
	if got := listPages(t, m, "/v2/_catalog", "repositories", 1000); strings.Join(got, ",") != "library/kept" {
		t.Errorf("catalog after the rule: %v, want [library/kept]", got)
	}
	if got := listPages(t, m, "/v2/kept/tags/list", "tags", 1000); strings.Join(got, ",") != "1,2" {
		t.Errorf("tags of kept: %v, want [1 2] (2-rc1 hidden)", got)
	}

	for _, ref := range []string{"org/blocked:a", "org/blocked:b", "org/elsewhere:c", "org/elsewhere@" + blockedDigest} {
		repo, tag, ok := strings.Cut(ref, "@")
		if !ok {
			repo, tag, _ = strings.Cut(ref, ":")
		}
		wantDenied(t, ref, m.do(t, http.MethodGet, "/v2/"+repo+"/manifests/"+tag, "Accept: "+oci.AcceptHeader(oci.ManifestMediaTypes)),
			"deny_digest#1", blockedDigest)
	}

	m = startMirror(t, siteOptions{storage: m.Storage, port: portOf(t, m), block: "deny_digest " + layer.String()})
	wantDenied(t, "blocked layer", m.do(t, http.MethodGet, "/v2/org/blocked/blobs/"+layer.String()), "deny_digest#1")
	wantDenied(t, "blocked layer elsewhere", m.do(t, http.MethodGet, "/v2/org/elsewhere/blobs/"+layer.String()), "deny_digest#1")

	m = startMirror(t, siteOptions{storage: m.Storage, port: portOf(t, m), upstreams: "upstream docker.io " + hub.URL + " {\n\t\t\tallow library/*\n\t\t}"})
	pullImage(t, m.Host+"/kept:1")
	wantDenied(t, "not on the allow list", m.do(t, http.MethodGet, "/v2/org/blocked/manifests/a"), "rule allow", "allow list")
}

// portOf returns the port of a test mirror.
func portOf(t *testing.T, m *mirrorSite) int {
	t.Helper()
	var port int
	if _, err := fmt.Sscanf(m.Host[strings.LastIndexByte(m.Host, ':')+1:], "%d", &port); err != nil {
		t.Fatal(err)
	}
	return port
}

// TestPolicySignedIndex pulls multi-platform images through a mirror that
// demands signatures: an index signed as a whole serves its platform
// manifests (covered by the index's signature); an unsigned index whose
// amd64 manifest is signed serves the index and that platform only; an
// index with nothing signed is refused.
func TestPolicySignedIndex(t *testing.T) {
	cosign := clientBinary(t, "cosign")
	crane := clientBinary(t, "crane")
	key := newCosignKey(t, cosign)
	platforms := []string{"linux/amd64", "linux/arm64"}
	_, whole, err := hub.PushIndex("indexed/whole", "1", platforms, true)
	if err != nil {
		t.Fatal(err)
	}
	childIdx, children, err := hub.PushIndex("indexed/children", "1", platforms, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hub.PushIndex("indexed/none", "1", platforms, true); err != nil {
		t.Fatal(err)
	}
	im, err := childIdx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var amd64, arm64 string
	for _, desc := range im.Manifests {
		switch desc.Platform.Architecture {
		case "amd64":
			amd64 = desc.Digest.String()
		case "arm64":
			arm64 = desc.Digest.String()
		}
	}
	cosignSign(t, cosign, key, "indexed/whole", whole)
	cosignSign(t, cosign, key, "indexed/children", amd64)
	m := startMirror(t, siteOptions{block: fmt.Sprintf("verify docker.io/indexed/* {\n\t\t\tkey %s\n\t\t}", key.public)})

	for _, p := range platforms {
		runClient(t, crane, "pull", "--insecure", "--platform", p, m.Host+"/indexed/whole:1", filepath.Join(t.TempDir(), "i.tar"))
	}
	runClient(t, crane, "pull", "--insecure", "--platform", "linux/amd64", m.Host+"/indexed/children:1", filepath.Join(t.TempDir(), "i.tar"))
	accept := "Accept: " + oci.AcceptHeader(oci.ManifestMediaTypes)
	if resp := m.do(t, http.MethodGet, "/v2/indexed/children/manifests/"+children, accept); resp.StatusCode != http.StatusOK {
		t.Errorf("index with a signed platform manifest: %d", resp.StatusCode)
	}
	wantDenied(t, "unsigned platform manifest", m.do(t, http.MethodGet, "/v2/indexed/children/manifests/"+arm64, accept), "verify#1", "no signature found")
	wantDenied(t, "unsigned index", m.do(t, http.MethodGet, "/v2/indexed/none/manifests/1", accept), "verify#1", "no signature found")
}

// TestPolicyWarmAndStatusPage warms an image the policy denies through the
// admin API: the warm fails naming the rule, without asking the upstream,
// and the status page shows the rule with its refusals.
func TestPolicyWarmAndStatusPage(t *testing.T) {
	pushPolicyImage(t, "library/nowarm", "1", 4096)
	dir := t.TempDir()
	port, adminPort := freePort(t), freePort(t)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	loadCaddyfile(t, caddyGlobalsAdmin(filepath.Join(dir, "caddy-data"), fmt.Sprintf("127.0.0.1:%d", adminPort))+fmt.Sprintf(`
http://127.0.0.1:%d {
	bind 127.0.0.1
	registry_cache {
		storage %s
		upstream docker.io %s
		deny docker.io/library/nowarm
	}
}
`, port, filepath.Join(dir, "cache"), hub.URL))
	hub.Counters.Reset()
	resp, err := http.Post(admin+"/registry_cache/warm", "application/json", strings.NewReader(`{"images":["nowarm:1"]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"error"`) || !strings.Contains(string(body), "DENIED") || !strings.Contains(string(body), "deny#1") {
		t.Errorf("warm of a denied image: %s; want an error naming the rule", body)
	}
	wantCount(t, "warm of a denied image: upstream requests", hub.Counters.Upstream(), 0)
	resp, err = http.Get(admin + "/registry_cache/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "<td>deny#1</td><td><code>docker.io/library/nowarm</code></td><td>enforce</td><td>1</td>") {
		t.Errorf("the status page does not show deny#1 with one refusal:\n%s", page)
	}
}

// TestPolicySignatureAddedLater refuses an unsigned image, then serves it
// once its publisher signs it: past the verdict's TTL the signatures are
// looked up again, and a new set is checked again.
func TestPolicySignatureAddedLater(t *testing.T) {
	cosign := clientBinary(t, "cosign")
	key := newCosignKey(t, cosign)
	img := pushPolicyImage(t, "later/app", "1", 4096)
	m := startMirror(t, siteOptions{block: fmt.Sprintf("negative_ttl off\n\t\tverify docker.io/later/* {\n\t\t\tkey %s\n\t\t\tverdict_ttl 1ns\n\t\t}", key.public)})
	accept := "Accept: " + oci.AcceptHeader(oci.ManifestMediaTypes)
	wantDenied(t, "before signing", m.do(t, http.MethodGet, "/v2/later/app/manifests/1", accept), "no signature found")
	cosignSign(t, cosign, key, img.repo, img.digest)
	resp := m.do(t, http.MethodGet, "/v2/later/app/manifests/1", accept)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after signing: status %d, want 200", resp.StatusCode)
	}
}

// TestPolicyConcurrentVerdictsShareOneLookup sends concurrent requests for
// a signed image that no verdict covers yet: they share one lookup of its
// signatures (one referrers request upstream) and are all served.
func TestPolicyConcurrentVerdictsShareOneLookup(t *testing.T) {
	cosign := clientBinary(t, "cosign")
	key := newCosignKey(t, cosign)
	img := pushPolicyImage(t, "shared/app", "1", 4096)
	cosignSign(t, cosign, key, img.repo, img.digest)
	m := startMirror(t, siteOptions{block: fmt.Sprintf("verify docker.io/shared/* {\n\t\t\tkey %s\n\t\t}", key.public)})
	hub.Counters.Reset()
	const clients = 8
	statuses := make(chan int, clients)
	for range clients {
		req := m.request(t, http.MethodGet, "/v2/shared/app/manifests/"+img.digest, "Accept: "+oci.AcceptHeader(oci.ManifestMediaTypes))
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	for range clients {
		if s := <-statuses; s != http.StatusOK {
			t.Errorf("a concurrent request got %d, want 200", s)
		}
	}
	wantCount(t, "referrers requests for concurrent verdicts", hub.Counters.Referrers.Load(), 1)
}

// TestPolicyManifestNotServedAsBlob refuses an unsigned image, whose 403
// names its digest, then asks for that digest at the blobs endpoint (GET,
// HEAD, a range), as registries store manifests as blobs: each is refused
// by the same rule, the manifest's bytes never reach the client, and no
// layer bytes leave the CDN. A signed image's manifest stays readable as
// a blob.
func TestPolicyManifestNotServedAsBlob(t *testing.T) {
	cosign := clientBinary(t, "cosign")
	key := newCosignKey(t, cosign)
	const layerSize = 64 << 10
	unsigned := pushPolicyImage(t, "blobpath/unsigned", "1", layerSize)
	signed := pushPolicyImage(t, "blobpath/signed", "1", layerSize)
	cosignSign(t, cosign, key, signed.repo, signed.digest)
	m := startMirror(t, siteOptions{block: fmt.Sprintf("verify docker.io/blobpath/* {\n\t\t\tkey %s\n\t\t}", key.public)})

	hub.Counters.Reset()
	accept := "Accept: " + oci.AcceptHeader(oci.ManifestMediaTypes)
	resp := m.do(t, http.MethodHead, "/v2/"+unsigned.repo+"/manifests/1", accept)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("HEAD of the unsigned image: %d, want 403", resp.StatusCode)
	}
	wantDenied(t, "GET of the unsigned image", m.do(t, http.MethodGet, "/v2/"+unsigned.repo+"/manifests/1", accept), unsigned.digest)
	blobPath := "/v2/" + unsigned.repo + "/blobs/" + unsigned.digest
	for i := range 2 { // cold verdict, then the cached one
		wantDenied(t, fmt.Sprintf("GET #%d of the manifest as a blob", i+1), m.do(t, http.MethodGet, blobPath), "verify#1", "no signature found")
	}
	wantDenied(t, "range of the manifest as a blob", m.do(t, http.MethodGet, blobPath, "Range: bytes=0-99"), "verify#1")
	resp = m.do(t, http.MethodHead, blobPath)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("HEAD of the manifest as a blob: %d, want 403", resp.StatusCode)
	}
	if n := hub.Counters.CDNBytes.Load(); n != 0 {
		t.Errorf("refused image: the CDN sent %d bytes, want none", n)
	}

	resp = m.do(t, http.MethodGet, "/v2/"+signed.repo+"/manifests/1", accept)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed image: %d, want 200", resp.StatusCode)
	}
	resp = m.do(t, http.MethodGet, "/v2/"+signed.repo+"/blobs/"+signed.digest)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || digestOfBytes(body) != signed.digest {
		t.Errorf("signed manifest as a blob: %d, digest %s; want 200 %s", resp.StatusCode, digestOfBytes(body), signed.digest)
	}
}
