package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// TestAuditLogFile runs Caddy with the README's log block, which writes
// the audit logger to a file of its own, and checks that a pull by tag
// and a Docker-style pull (HEAD by tag, then GET by digest) make one line
// each with the client, the image and the source, that the site's
// basic_auth user is named, also for a Docker-style pull through a
// trusted proxy, with the client the proxy named, and that no credential
// is written.
func TestAuditLogFile(t *testing.T) {
	img, _, err := hub.PushImage("library/audited", "1", 1, 1024, false)
	if err != nil {
		t.Fatal(err)
	}
	private, _, err := hub.PushImage("private/audited", "1", 1, 1024, false)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	host, auditFile := startAuditedMirror(t, fmt.Sprintf(`basic_auth /v2/private/* {
			alice %s
		}`, hash))

	// A pull by tag (go-containerregistry: GET by tag, then blobs).
	pullImage(t, host+"/audited:1")
	// A Docker-style pull: HEAD by tag, GET by digest.
	ref, err := name.ParseReference(host+"/audited:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	byDigest, err := name.ParseReference(host+"/audited@"+desc.Digest.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(byDigest); err != nil {
		t.Fatal(err)
	}
	// A pull behind the site's basic_auth names its user.
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/private/audited/manifests/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("alice", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pull behind basic_auth: status %d", resp.StatusCode)
	}
	privateDigest, err := private.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// A Docker-style pull behind basic_auth, through a trusted proxy: the
	// HEAD by tag is the pull, with the client the proxy named and the
	// site's user, and the GET by digest that follows writes none.
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		reference := "1"
		if method == http.MethodGet {
			reference = privateDigest.String()
		}
		req, err := http.NewRequest(method, "http://"+host+"/v2/private/audited/manifests/"+reference, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("alice", "s3cret")
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != privateDigest.String() {
			t.Fatalf("%s %s behind basic_auth: status %d, digest %q, want 200 and %s",
				method, reference, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), privateDigest)
		}
	}

	manifest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw, lines := auditLines(t, auditFile)
	if strings.Contains(raw, "s3cret") || strings.Contains(raw, "Authorization") {
		t.Errorf("the audit log holds a credential:\n%s", raw)
	}
	type want struct{ repo, reference, digest, source, user, client string }
	wants := []want{
		{"library/audited", "1", manifest.String(), "upstream", "", "127.0.0.1"},
		{"library/audited", "1", manifest.String(), "cache", "", "127.0.0.1"}, // the HEAD; its GET by digest writes none
		{"private/audited", "1", privateDigest.String(), "upstream", "alice", "127.0.0.1"},
		{"private/audited", "1", privateDigest.String(), "cache", "alice", "203.0.113.7"}, // the HEAD; its GET by digest writes none
	}
	if len(lines) != len(wants) {
		t.Fatalf("%d audit lines, want %d (one per pull):\n%s", len(lines), len(wants), raw)
	}
	for i, w := range wants {
		l := lines[i]
		if l["logger"] != "http.handlers.registry_cache.audit" || l["level"] != "info" || l["msg"] != "pull" ||
			l["client_ip"] != w.client || l["upstream"] != "docker.io" || l["repository"] != w.repo ||
			l["reference"] != w.reference || l["digest"] != w.digest || l["source"] != w.source || l["user"] != w.user {
			t.Errorf("audit line %d: %v, want %+v", i, l, w)
		}
	}
}

// startAuditedMirror runs a mirror site whose Caddy writes the audit
// logger to a file of its own with the README's log block, and returns
// the site's host and the file. The server trusts X-Forwarded-For from
// loopback, as behind a proxy on the same host. auth is a handler placed before
// registry_cache in the site's route (empty: none).
func startAuditedMirror(t *testing.T, auth string) (host, auditFile string) {
	t.Helper()
	dir := shortTempDir(t)
	auditFile = filepath.Join(dir, "audit.log")
	port := freePort(t)
	if auth != "" {
		auth = "\n\t\t" + auth
	}
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s
	log default {
		exclude http.handlers.registry_cache.audit
		level ERROR
	}
	log audit {
		include http.handlers.registry_cache.audit
		output file %s
		format json
	}
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	route {%s
		registry_cache {
			storage %s
			upstream docker.io %s
		}
	}
}
`, filepath.Join(dir, "caddy-data"), auditFile, port, auth, filepath.Join(dir, "cache"), hub.URL))
	return fmt.Sprintf("127.0.0.1:%d", port), auditFile
}

// auditLines reads an audit log file: its text and its JSON lines.
func auditLines(t *testing.T, file string) (string, []map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return string(raw), lines
}

// TestDockerPullIsAuditedOnce pulls with the Docker daemon, which asks a
// mirror HEAD by tag, then GET by digest unless it still holds the
// manifest: each pull writes one audit line, from the upstream the first
// time and from the cache the second.
func TestDockerPullIsAuditedOnce(t *testing.T) {
	img, _, err := hub.PushImage("library/dockeraudit", "latest", 1, 2048, false)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	host, auditFile := startAuditedMirror(t, "")
	d := startDockerd(t, fmt.Sprintf(`{
  "registry-mirrors": ["http://%s"],
  "insecure-registries": [%q]
}`, host, host))
	for i, source := range []string{"upstream", "cache"} {
		d.docker(t, "pull", "dockeraudit")
		d.docker(t, "rmi", "dockeraudit")
		raw, lines := auditLines(t, auditFile)
		if len(lines) != i+1 {
			t.Fatalf("after %d docker pulls: %d audit lines, want %d:\n%s", i+1, len(lines), i+1, raw)
		}
		l := lines[i]
		if l["repository"] != "library/dockeraudit" || l["reference"] != "latest" || l["digest"] != want.String() || l["source"] != source ||
			l["client_ip"] != "127.0.0.1" || l["upstream"] != "docker.io" {
			t.Errorf("audit line of docker pull %d: %v, want library/dockeraudit %s from the %s", i+1, l, want, source)
		}
	}
}
