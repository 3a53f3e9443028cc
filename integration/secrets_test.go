package integration

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/crypto/bcrypt"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestUpstreamCredentialsNeverLeak pulls a private repository with
// credentials configured on the upstream (a service account, its password
// from an environment placeholder) while everything logs at DEBUG, access
// log included: the password, its Basic form and any bearer token stay
// out of the logs, the metrics and the admin API, and the CDN the blobs are redirected to never receives
// an Authorization header.
func TestUpstreamCredentialsNeverLeak(t *testing.T) {
	const user, password = "svc", "svc-secret-pw-7f3a"
	private, err := hubtest.Start(hubtest.Options{
		Users:   map[string]string{user: password},
		Private: map[string][]string{"corp/app": {user}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = private.Close() })
	_, want, err := private.PushImage("corp/app", "1", 2, 8192, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGCACHE_TEST_HUB_PASSWORD", password)
	host, logs := debugLoggedMirror(t, fmt.Sprintf(`upstream docker.io {
			url %s
			username %s
			password {env.REGCACHE_TEST_HUB_PASSWORD}
			trusted_realm localhost
		}`, private.URL, user))
	img := pullImage(t, host+"/corp/app:1")
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("digest %s, want %s", got, want)
	}
	if private.Counters.CDNGET.Load() == 0 || private.Counters.CDNAuthRejected.Load() != 0 {
		t.Errorf("CDN: %d GETs, %d carrying Authorization; want some, none", private.Counters.CDNGET.Load(), private.Counters.CDNAuthRejected.Load())
	}
	wantNoSecrets(t, logs(), `"upstream request"`, password, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
}

// debugLoggedMirror loads a mirror site with upstreams (registry_cache
// lines) whose server and access logs go to files at DEBUG, with metrics
// on the site and Caddy's admin API, and returns its host:port and a
// function that returns everything an operator could read: both logs, the
// metrics, and the admin API's status page, stats and repositories.
func debugLoggedMirror(t *testing.T, upstreams string) (string, func() string) {
	t.Helper()
	dir := t.TempDir()
	port, adminPort := freePort(t), freePort(t)
	serverLog, accessLog := filepath.Join(dir, "server.log"), filepath.Join(dir, "access.log")
	loadCaddyfile(t, fmt.Sprintf(`{
	admin 127.0.0.1:%[6]d
	persist_config off
	skip_install_trust
	storage file_system %[1]s/caddy-data
	log {
		output file %[2]s
		level DEBUG
	}
}

http://127.0.0.1:%[4]d {
	bind 127.0.0.1
	log {
		output file %[3]s
		level DEBUG
	}
	metrics /metrics
	registry_cache {
		storage %[1]s/cache
		%[5]s
	}
}
`, dir, serverLog, accessLog, port, upstreams, adminPort))
	host := fmt.Sprintf("127.0.0.1:%d", port)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	return host, func() string {
		var all strings.Builder
		for _, f := range []string{serverLog, accessLog} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all.Write(b)
		}
		for _, url := range []string{"http://" + host + "/metrics", admin + "/metrics", admin + "/registry_cache/",
			admin + "/registry_cache/stats", admin + "/registry_cache/repositories"} {
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %.200s", url, resp.StatusCode, b)
			}
			all.Write(b)
		}
		return all.String()
	}
}

// wantNoSecrets fails the test when logs contain one of secrets or any
// bearer token, or lack proof (a DEBUG line without which the check would
// prove nothing).
func wantNoSecrets(t *testing.T, logs, proof string, secrets ...string) {
	t.Helper()
	if !strings.Contains(logs, proof) {
		t.Fatalf("the logs hold no %s line at DEBUG; the check would prove nothing:\n%.2000s", proof, logs)
	}
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("the DEBUG logs contain a secret (%.6s…)", secret)
		}
	}
	if m := bearerToken.FindString(logs); m != "" {
		t.Errorf("the DEBUG logs contain a bearer token: %.16s…", m)
	}
}

// bearerToken matches a bearer token in a log (not a challenge, which
// reads Bearer realm=...).
var bearerToken = regexp.MustCompile(`Bearer [A-Za-z0-9._~+/-]{16,}`)

// TestSiteAccessControlComposes shows the two ways the README gives to
// keep a mirror whose upstream credentials reach private repositories to
// the office: Caddy's basic_auth in front of registry_cache (a client
// without the site's credentials gets 401, one with them pulls), and an
// allow-list of networks with remote_ip (anyone outside gets 403).
func TestSiteAccessControlComposes(t *testing.T) {
	_, want, err := hub.PushImage("library/guarded", "1", 1, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("office-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	authPort, lanPort, outsidePort := freePort(t), freePort(t), freePort(t)
	loadCaddyfile(t, caddyGlobals(filepath.Join(dir, "caddy-data"))+fmt.Sprintf(`
http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	basic_auth {
		office %[5]s
	}
	registry_cache {
		storage %[1]s/cache
		upstream docker.io %[6]s
	}
}

http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	@outside not remote_ip 127.0.0.0/8
	respond @outside "not from the office network" 403
	registry_cache {
		storage %[1]s/cache
		upstream docker.io %[6]s
	}
}

http://127.0.0.1:%[4]d {
	bind 127.0.0.1
	@outside not remote_ip 10.0.0.0/8
	respond @outside "not from the office network" 403
	registry_cache {
		storage %[1]s/cache
		upstream docker.io %[6]s
	}
}
`, dir, authPort, lanPort, outsidePort, hash, hub.URL))
	pull := func(port int, auth authn.Authenticator) (string, error) {
		return pullAs(fmt.Sprintf("127.0.0.1:%d/guarded:1", port), auth)
	}
	for _, tc := range []struct {
		name   string
		port   int
		auth   authn.Authenticator
		wantOK bool
	}{
		{"basic_auth, no credentials", authPort, authn.Anonymous, false},
		{"basic_auth, wrong password", authPort, &authn.Basic{Username: "office", Password: "nope"}, false},
		{"basic_auth, the site's credentials", authPort, &authn.Basic{Username: "office", Password: "office-pw"}, true},
		{"remote_ip, inside the allowed network", lanPort, authn.Anonymous, true},
		{"remote_ip, outside it", outsidePort, authn.Anonymous, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pull(tc.port, tc.auth)
			if tc.wantOK && (err != nil || got != want) {
				t.Errorf("pull: %s, %v; want %s", got, err, want)
			}
			if !tc.wantOK && err == nil {
				t.Errorf("pulled %s; want a refusal", got)
			}
		})
	}
}
