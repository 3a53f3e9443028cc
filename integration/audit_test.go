package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
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
// and a Docker-style pull (HEAD by tag, GET by digest) make one line each
// with the client, the image and the source, that the site's basic_auth
// user is named, and that no credential is written.
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
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.log")
	port := freePort(t)
	storage := filepath.Join(dir, "cache")
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
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	route {
		basic_auth /v2/private/* {
			alice %s
		}
		registry_cache {
			storage %s
			upstream docker.io %s
		}
	}
}
`, filepath.Join(dir, "caddy-data"), auditFile, port, hash, storage, hub.URL))
	host := fmt.Sprintf("127.0.0.1:%d", port)

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

	manifest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "s3cret") || strings.Contains(string(raw), "Authorization") {
		t.Errorf("the audit log holds a credential:\n%s", raw)
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
	type want struct{ repo, reference, digest, source, user string }
	wants := []want{
		{"library/audited", "1", manifest.String(), "upstream", ""},
		{"library/audited", manifest.String(), manifest.String(), "cache", ""},
		{"private/audited", "1", privateDigest.String(), "upstream", "alice"},
	}
	if len(lines) != len(wants) {
		t.Fatalf("%d audit lines, want %d (one per pull):\n%s", len(lines), len(wants), raw)
	}
	for i, w := range wants {
		l := lines[i]
		if l["logger"] != "http.handlers.registry_cache.audit" || l["level"] != "info" || l["msg"] != "pull" ||
			l["client_ip"] != "127.0.0.1" || l["upstream"] != "docker.io" || l["repository"] != w.repo ||
			l["reference"] != w.reference || l["digest"] != w.digest || l["source"] != w.source || l["user"] != w.user {
			t.Errorf("audit line %d: %v, want %+v", i, l, w)
		}
	}
}
