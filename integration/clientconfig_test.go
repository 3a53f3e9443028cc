package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// clientConfigMirror runs a mirror of docker.io and ghcr.io (both the test
// hub) whose site address is site, with Caddy's admin API on loopback, and
// returns the admin address (host:port) and Caddy's data directory.
func clientConfigMirror(t *testing.T, site, tls string) (admin, data string) {
	t.Helper()
	dir := t.TempDir()
	data = filepath.Join(dir, "caddy-data")
	admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	loadCaddyfile(t, caddyGlobalsAdmin(data, admin)+fmt.Sprintf(`
%s {
	bind 127.0.0.1
	%s
	registry_cache {
		storage %s
		upstream docker.io %s
		upstream ghcr.io %s
	}
}
`, site, tls, filepath.Join(dir, "cache"), hub.URL, hub.URL))
	return admin, data
}

// clientConfig runs `caddy registry-cache client-config` (the test binary
// acting as the caddy command) with args and --output, and returns the
// directory it wrote the client files under.
func clientConfig(t *testing.T, args ...string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command(os.Args[0], append([]string{"registry-cache", "client-config", "--output", out}, args...)...)
	cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("client-config %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// listFiles returns the files under dir, as paths relative to it.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		files = append(files, "/"+rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// podmanPull pulls ref with podman on vfs storage in a new private root,
// with registries.conf conf and extra flags of `podman pull`, and returns
// the pulled image's digest.
func podmanPull(t *testing.T, podman, conf, ref string, extra ...string) string {
	t.Helper()
	policy := filepath.Join(t.TempDir(), "policy.json")
	writeFile(t, policy, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
	root := shortTempDir(t) // podman limits the runroot path to 50 characters
	args := []string{"--root", filepath.Join(root, "root"), "--runroot", filepath.Join(root, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	runClient(t, podman, append(append(args, "pull", "--signature-policy", policy), append(extra, ref)...)...)
	return runClient(t, podman, append(args, "image", "inspect", "--format", "{{.Digest}}", ref)...)
}

// TestClientConfigPlainHTTP feeds the output of `caddy registry-cache
// client-config` for a plain-HTTP mirror, its registries read from the
// running config, to a real dockerd (daemon.json), containerd (the
// hosts.toml directory) and podman (the registries.conf drop-in), and pulls
// a Docker Hub image and a ghcr.io image with each through the mirror.
func TestClientConfigPlainHTTP(t *testing.T) {
	ctr := clientBinary(t, "ctr")
	podman := clientBinary(t, "podman")
	_, box, err := hub.PushImage("library/ccbox", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	// A one-component name exists on the hub only as such: routed to
	// docker.io instead of ghcr.io it would become library/ccapp and fail.
	_, app, err := hub.PushImage("ccapp", "1", 1, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	host := fmt.Sprintf("127.0.0.1:%d", port)
	admin, _ := clientConfigMirror(t, "http://"+host, "")
	out := clientConfig(t, "--address", admin, "--mirror", "http://"+host)
	want := []string{
		"/etc/containerd/certs.d/docker.io/hosts.toml",
		"/etc/containerd/certs.d/ghcr.io/hosts.toml",
		"/etc/containers/registries.conf.d/50-regcache.conf",
		"/etc/docker/daemon.json",
	}
	if got := listFiles(t, out); !slices.Equal(got, want) {
		t.Fatalf("client-config wrote %q, want %q", got, want)
	}

	pulled := func(client, ref, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s pull of %s: digest %s, want %s", client, ref, got, want)
		}
		if hub.Counters.ManifestGET.Load() == 0 {
			t.Errorf("%s pull of %s did not go through the mirror to the hub: %s", client, ref, hub.Counters)
		}
	}

	// containerd, by ns routing.
	c := startContainerd(t)
	for _, p := range []struct{ ref, want string }{{"docker.io/library/ccbox:1", box}, {"ghcr.io/ccapp:1", app}} {
		hub.Counters.Reset()
		runClient(t, ctr, "--address", c.Address, "image", "pull", "--hosts-dir",
			filepath.Join(out, "etc/containerd/certs.d"), "--snapshotter", "native", p.ref)
		pulled("ctr", p.ref, c.imageDigest(t, ctr, p.ref), p.want)
	}
	c.stop(t)

	// podman, by the registries.conf.d drop-in; the purge in between makes
	// each pull reach the hub again.
	conf := filepath.Join(out, "etc/containers/registries.conf.d/50-regcache.conf")
	for _, p := range []struct{ ref, want string }{{"docker.io/library/ccbox:1", box}, {"ghcr.io/ccapp:1", app}} {
		purgeAll(t, admin)
		hub.Counters.Reset()
		pulled("podman", p.ref, podmanPull(t, podman, conf, p.ref), p.want)
	}

	// Docker, by registry-mirrors (Docker Hub) and by path prefix.
	daemonJSON, err := os.ReadFile(filepath.Join(out, "etc/docker/daemon.json"))
	if err != nil {
		t.Fatal(err)
	}
	d := startDockerd(t, string(daemonJSON))
	for _, p := range []struct{ ref, repo, want string }{
		{"ccbox:1", "ccbox", box},
		{host + "/ghcr.io/ccapp:1", host + "/ghcr.io/ccapp", app},
	} {
		purgeAll(t, admin)
		hub.Counters.Reset()
		d.docker(t, "pull", p.ref)
		pulled("docker", p.ref, d.repoDigest(t, p.ref, p.repo), p.want)
	}
}

// purgeAll empties the mirror's cache of the test images through the
// admin API, so that the next pull fetches from the hub again.
func purgeAll(t *testing.T, admin string) {
	t.Helper()
	for _, repo := range []string{"docker.io/library/ccbox", "ghcr.io/ccapp"} {
		if status := adminJSON(t, "POST", "http://"+admin+"/registry_cache/purge", fmt.Sprintf(`{"repository":%q}`, repo), nil); status != 200 {
			t.Fatalf("purging %s: status %d", repo, status)
		}
	}
}

// TestClientConfigInternalTLS runs a mirror on HTTPS with Caddy's internal
// CA and feeds client-config's output with --ca (the CA's root) and
// --registry to containerd (the CA next to each hosts.toml) and podman
// (the drop-in, and the CA in the certs.d directory of the mirror's host),
// which pull through it trusting only that root. (Docker reads CAs only
// from /etc/docker/certs.d, which a test leaves alone.)
func TestClientConfigInternalTLS(t *testing.T) {
	ctr := clientBinary(t, "ctr")
	podman := clientBinary(t, "podman")
	_, box, err := hub.PushImage("library/cctls", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("localhost:%d", freePort(t))
	_, data := clientConfigMirror(t, "https://"+host, "tls internal")
	root, _ := waitInternalTLS(t, data, host)
	out := clientConfig(t, "--mirror", "https://"+host, "--ca", root, "--registry", "docker.io")
	want := []string{
		"/etc/containerd/certs.d/docker.io/hosts.toml",
		"/etc/containerd/certs.d/docker.io/regcache-ca.crt",
		"/etc/containers/certs.d/" + host + "/ca.crt",
		"/etc/containers/registries.conf.d/50-regcache.conf",
		"/etc/docker/certs.d/" + host + "/ca.crt",
		"/etc/docker/daemon.json",
	}
	if got := listFiles(t, out); !slices.Equal(got, want) {
		t.Fatalf("client-config wrote %q, want %q", got, want)
	}

	c := startContainerd(t)
	hub.Counters.Reset()
	runClient(t, ctr, "--address", c.Address, "image", "pull", "--hosts-dir",
		filepath.Join(out, "etc/containerd/certs.d"), "--snapshotter", "native", "docker.io/library/cctls:1")
	if got := c.imageDigest(t, ctr, "docker.io/library/cctls:1"); got != box {
		t.Errorf("ctr pull over TLS: digest %s, want %s", got, box)
	}
	if hub.Counters.ManifestGET.Load() == 0 {
		t.Errorf("ctr pull over TLS did not go through the mirror: %s", hub.Counters)
	}
	c.stop(t)

	got := podmanPull(t, podman, filepath.Join(out, "etc/containers/registries.conf.d/50-regcache.conf"),
		"docker.io/library/cctls:1", "--cert-dir", filepath.Join(out, "etc/containers/certs.d", host))
	if got != box {
		t.Errorf("podman pull over TLS: digest %s, want %s", got, box)
	}
}
