package integration

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/regcache/regcache/caddymodule"
	"github.com/regcache/regcache/integration/hubtest"
)

// hub is the Docker-Hub-like upstream shared by the tests of this package.
var hub *hubtest.Hub

func TestMain(m *testing.M) {
	if os.Getenv(childCaddyEnv) == "1" {
		// This test binary was started as a Caddy process (crash tests).
		caddycmd.Main()
		return
	}
	h, err := hubtest.Start(hubtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test hub:", err)
		os.Exit(1)
	}
	hub = h
	code := m.Run()
	_ = h.Close()
	os.Exit(code)
}

// mirrorSite is one regcache site running in the in-process Caddy.
type mirrorSite struct {
	// Host is host:port of the site, as image references name it.
	Host string
	// URL is http://Host.
	URL string
	// Storage is the cache directory.
	Storage string
}

// siteOptions shape the Caddyfile of a test mirror.
type siteOptions struct {
	// storage reuses a cache directory (a restart); default: a new one.
	storage string
	// port reuses a port; default: a free one.
	port int
	// block is extra lines inside registry_cache { }.
	block string
	// upstreams replaces the default `upstream docker.io <hub>` line.
	upstreams string
}

// startMirror loads a Caddy config with one registry_cache site whose
// docker.io upstream is the test hub, and stops Caddy when the test ends.
// Caddy runs one config at a time, so tests of this package never run in
// parallel.
func startMirror(t *testing.T, o siteOptions) *mirrorSite {
	t.Helper()
	if o.storage == "" {
		o.storage = filepath.Join(t.TempDir(), "cache")
	}
	if o.port == 0 {
		o.port = freePort(t)
	}
	if o.upstreams == "" {
		o.upstreams = "upstream docker.io " + hub.URL
	}
	cfg := caddyGlobals(filepath.Join(filepath.Dir(o.storage), "caddy-data")) + fmt.Sprintf(`
http://127.0.0.1:%d {
	bind 127.0.0.1
	registry_cache {
		storage %s
		tag_ttl 1h
%s
	}
}
`, o.port, o.storage, blockLines(o.upstreams, o.block))
	loadCaddyfile(t, cfg)
	host := fmt.Sprintf("127.0.0.1:%d", o.port)
	return &mirrorSite{Host: host, URL: "http://" + host, Storage: o.storage}
}

// caddyGlobals is the global options block of every test config: no
// admin endpoint, no saved config, no trust store changes, Caddy's own
// storage in dataDir, and only errors logged.
func caddyGlobals(dataDir string) string {
	return caddyGlobalsAdmin(dataDir, "off")
}

// caddyGlobalsAdmin is caddyGlobals with the admin endpoint at admin
// ("off" for none).
func caddyGlobalsAdmin(dataDir, admin string) string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		level ERROR
	}
}
`, admin, dataDir)
}

// blockLines indents the non-empty parts as lines of a registry_cache
// block, so that the Caddyfile stays formatted.
func blockLines(parts ...string) string {
	var lines []string
	for _, p := range parts {
		if strings.TrimSpace(p) != "" {
			lines = append(lines, "\t\t"+p)
		}
	}
	return strings.Join(lines, "\n")
}

// loadCaddyfile adapts and loads a Caddyfile into the in-process Caddy.
func loadCaddyfile(t *testing.T, cfg string) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfgJSON, warnings, err := adapter.Adapt([]byte(cfg), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, cfg)
	}
	for _, w := range warnings {
		t.Logf("Caddyfile warning: %s", w)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		t.Fatalf("loading Caddy config: %v\n%s", err, cfgJSON)
	}
	// A kept-alive connection to the server of the previous config (a
	// restart on the same port) would meet that server's shutdown.
	http.DefaultClient.CloseIdleConnections()
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping Caddy: %v", err)
		}
	})
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// request builds a request to the mirror with optional headers given as
// "Name: value" strings.
func (s *mirrorSite) request(t *testing.T, method, path string, headers ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return req
}

// do sends a request to the mirror (see request) and returns its response.
func (s *mirrorSite) do(t *testing.T, method, path string, headers ...string) *http.Response {
	t.Helper()
	req := s.request(t, method, path, headers...)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}
