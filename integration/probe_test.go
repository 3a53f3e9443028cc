package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// probeNetnsEnv names the network namespace TestNoProbingDoor runs in, in
// the test binary it starts there.
const probeNetnsEnv = "REGCACHE_PROBE_NETNS"

// The addresses the namespace gives its loopback interface: a private
// address for upstreams that are not on loopback, and the cloud metadata
// address. No traffic leaves the namespace.
const (
	probePrivateAddr  = "10.255.0.1"
	probeMetadataAddr = "169.254.169.254"
)

// TestNoProbingDoor: an upstream on a private network that redirects the
// mirror, or names its token realm, on loopback or at the cloud metadata
// address is refused at dial time (502, and the target sees no
// connection), while upstreams on loopback keep working, redirects
// included, and allowed_networks opens a network. The test creates a
// network namespace with those addresses on its loopback interface and
// runs itself inside it; it needs root and iproute2.
func TestNoProbingDoor(t *testing.T) {
	if os.Getenv(probeNetnsEnv) != "" {
		probeInNamespace(t)
		return
	}
	name := fmt.Sprintf("regcache-probe-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("deleting the network namespace %s: %v\n%s", name, err, out)
		}
	})
	ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
	ip("netns", "exec", name, "ip", "addr", "add", probePrivateAddr+"/32", "dev", "lo")
	ip("netns", "exec", name, "ip", "addr", "add", probeMetadataAddr+"/32", "dev", "lo")
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0],
		"-test.run", "^TestNoProbingDoor$", "-test.count=1", "-test.v", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), probeNetnsEnv+"="+name)
	out, err := cmd.CombinedOutput()
	t.Logf("in the network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test in its network namespace failed: %v", err)
	}
}

// canary is a server that must see no connection, except where the test
// allows it: it answers every request with a manifest (or a token).
type canary struct {
	URL   string
	conns atomic.Int64
}

// probeManifest is what the canary serves as a manifest.
const probeManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`

// serveOn serves handler on addr:0 until the test ends and returns its
// base URL; conns, when set, counts its connections.
func serveOn(t *testing.T, addr string, handler http.Handler, conns *atomic.Int64) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	if conns != nil {
		srv.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

// newCanary starts a canary on addr.
func newCanary(t *testing.T, addr string) *canary {
	c := &canary{}
	c.URL = serveOn(t, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/token") {
			_, _ = io.WriteString(w, `{"token":"canary","expires_in":300}`)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", digest.FromString(probeManifest).String())
		w.Header().Set("Content-Length", strconv.Itoa(len(probeManifest)))
		_, _ = io.WriteString(w, probeManifest)
	}), &c.conns)
	return c
}

// probeInNamespace is TestNoProbingDoor inside its network namespace.
func probeInNamespace(t *testing.T) {
	onLoopback := newCanary(t, "127.0.0.1")
	atMetadata := newCanary(t, probeMetadataAddr)
	redirectTo := func(target string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
		})
	}
	realmAt := func(target string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Www-Authenticate", `Bearer realm="`+target+`/token",service="probe"`)
			w.WriteHeader(http.StatusUnauthorized)
		})
	}
	localhostURL := strings.Replace(onLoopback.URL, "127.0.0.1", "localhost", 1)
	upstreams := []struct {
		name    string
		handler http.Handler
		canary  *canary
	}{
		{"redirect-loopback.test", redirectTo(onLoopback.URL), onLoopback},
		{"redirect-localhost.test", redirectTo(localhostURL), onLoopback},
		{"redirect-metadata.test", redirectTo(atMetadata.URL), atMetadata},
		{"realm-loopback.test", realmAt(onLoopback.URL), onLoopback},
		{"realm-metadata.test", realmAt(atMetadata.URL), atMetadata},
	}
	var lines []string
	for _, u := range upstreams {
		lines = append(lines, "upstream "+u.name+" "+serveOn(t, probePrivateAddr, u.handler, nil))
	}
	// An upstream on loopback whose redirect stays on loopback.
	lines = append(lines, "upstream loopback.test "+serveOn(t, "127.0.0.1", redirectTo(onLoopback.URL), nil))
	lines = append(lines, "upstream docker.io "+hub.URL)
	m := startMirror(t, siteOptions{upstreams: strings.Join(lines, "\n\t\t")})

	for _, u := range upstreams {
		t.Run(u.name, func(t *testing.T) {
			before := u.canary.conns.Load()
			resp := m.do(t, http.MethodGet, "/v2/"+u.name+"/probe/manifests/1")
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "internal address") {
				t.Errorf("%d %s, want 502 naming the internal address", resp.StatusCode, body)
			}
			if n := u.canary.conns.Load() - before; n != 0 {
				t.Errorf("the internal target saw %d connections", n)
			}
		})
	}
	t.Run("loopback upstream", func(t *testing.T) {
		before := onLoopback.conns.Load()
		resp := m.do(t, http.MethodGet, "/v2/loopback.test/probe/manifests/1")
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || onLoopback.conns.Load() == before {
			t.Errorf("a loopback upstream's redirect to loopback: %d, want 200 from the loopback target", resp.StatusCode)
		}
		if _, want, err := hub.PushImage("library/probe", "1", 1, 4096, false); err != nil {
			t.Fatal(err)
		} else if img := pullImage(t, m.Host+"/probe:1"); img == nil {
			t.Fatal("no image")
		} else if got, _ := img.Digest(); got.String() != want {
			t.Errorf("pulled %s from the loopback hub, want %s", got, want)
		}
	})
	t.Run("allowed network", func(t *testing.T) {
		m := startMirror(t, siteOptions{upstreams: strings.Join(lines, "\n\t\t"), block: "allowed_networks " + probeMetadataAddr + "/32"})
		before := atMetadata.conns.Load()
		resp := m.do(t, http.MethodGet, "/v2/redirect-metadata.test/probe/manifests/1")
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || atMetadata.conns.Load() == before {
			t.Errorf("a redirect into allowed_networks: %d, want 200 from the target", resp.StatusCode)
		}
		resp = m.do(t, http.MethodGet, "/v2/redirect-loopback.test/probe/manifests/1")
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("a redirect to loopback with another network allowed: %d, want 502", resp.StatusCode)
		}
	})
}
