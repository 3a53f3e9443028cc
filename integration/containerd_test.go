package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestContainerdPullsThroughHostsDir pulls with ctr through hosts.toml
// files that name the mirror for docker.io and for ghcr.io: containerd
// asks the mirror with ?ns=<registry>, and the mirror routes by it. The
// ghcr.io images have one-component names, which exist on the hub only as
// such: routed to docker.io they would become library/<name> and not be
// found. Each image is pulled cold by one containerd and then by a new
// containerd with an empty root, from the cache.
func TestContainerdPullsThroughHostsDir(t *testing.T) {
	ctr := clientBinary(t, "ctr")
	_, box, err := hub.PushImage("library/ctrbox", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	_, alpine, err := hub.PushIndex("library/ctralpine", "3.19", []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, true)
	if err != nil {
		t.Fatal(err)
	}
	_, app, err := hub.PushImage("ctrapp", "1", 1, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	_, multi, err := hub.PushIndex("ctrmulti", "1", []string{"linux/amd64", "linux/arm64"}, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io %s\n\t\tupstream ghcr.io %s", hub.URL, hub.URL)})
	hosts := t.TempDir()
	for _, h := range []struct{ registry, server string }{
		{"docker.io", "https://registry-1.docker.io"},
		{"ghcr.io", "https://ghcr.io"},
	} {
		writeHostsTOML(t, hosts, h.registry, h.server, "http://"+m.Host)
	}

	pulls := []struct {
		ref  string
		want string
		// allPlatforms pulls every platform of an index, not only the
		// host's.
		allPlatforms bool
	}{
		{"docker.io/library/ctrbox:1", box, false},
		{"docker.io/library/ctralpine:3.19", alpine, false},
		{"ghcr.io/ctrapp:1", app, false},
		{"ghcr.io/ctrmulti:1", multi, true},
	}
	for _, pass := range []string{"cold", "warm"} {
		c := startContainerd(t)
		for _, p := range pulls {
			hub.Counters.Reset()
			args := []string{"--address", c.Address, "image", "pull", "--hosts-dir", hosts, "--snapshotter", "native"}
			if p.allPlatforms {
				args = append(args, "--all-platforms")
			}
			runClient(t, ctr, append(args, p.ref)...)
			if got := c.imageDigest(t, ctr, p.ref); got != p.want {
				t.Errorf("%s pull of %s: image digest %s, want %s", pass, p.ref, got, p.want)
			}
			switch pass {
			case "cold":
				if hub.Counters.ManifestGET.Load() == 0 || hub.Counters.CDNGET.Load() == 0 {
					t.Errorf("cold pull of %s did not fill the cache from the hub: %s", p.ref, hub.Counters)
				}
			case "warm":
				wantCount(t, "warm ctr pull of "+p.ref+": upstream requests", hub.Counters.Upstream(), 0)
			}
		}
		c.stop(t)
	}
}

// writeHostsTOML writes dir/<registry>/hosts.toml, which sends pulls and
// tag resolution of registry to mirror first and then to server.
func writeHostsTOML(t *testing.T, dir, registry, server, mirror string) {
	t.Helper()
	d := filepath.Join(dir, registry)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d, "hosts.toml"), fmt.Sprintf(`server = %q

[host.%q]
  capabilities = ["pull", "resolve"]
`, server, mirror))
}

// imageDigest returns the target digest of image ref in containerd's
// default namespace, from ctr image ls.
func (c *containerd) imageDigest(t *testing.T, ctr, ref string) string {
	t.Helper()
	out := runClient(t, ctr, "--address", c.Address, "image", "ls")
	// REF TYPE DIGEST SIZE PLATFORMS LABELS
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ref {
			return f[2]
		}
	}
	t.Fatalf("ctr image ls has no %s:\n%s", ref, out)
	return ""
}

// TestContainerdPullsPrivateImageOverInternalTLS pulls a private image with
// ctr through a mirror served over HTTPS by Caddy's internal CA, whose root
// containerd trusts by the ca entry of hosts.toml (nothing installed in the
// system trust store): with the allowed user's credentials (--user) the
// pull succeeds, without credentials it fails.
func TestContainerdPullsPrivateImageOverInternalTLS(t *testing.T) {
	ctr := clientBinary(t, "ctr")
	h := privateHub(t)
	_, want, err := h.PushImage("corp/secret", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "caddy-data")
	port := freePort(t)
	loadCaddyfile(t, caddyGlobals(data)+fmt.Sprintf(`
https://localhost:%d {
	bind 127.0.0.1
	tls internal
	registry_cache {
		storage %s
		upstream docker.io {
			url %s
			trusted_realm localhost
		}
	}
}
`, port, filepath.Join(dir, "cache"), h.URL))
	host := fmt.Sprintf("localhost:%d", port)
	root, _ := waitInternalTLS(t, data, host)
	hosts := t.TempDir()
	d := filepath.Join(hosts, "docker.io")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d, "hosts.toml"), fmt.Sprintf(`server = "https://registry-1.docker.io"

[host."https://%s"]
  capabilities = ["pull", "resolve"]
  ca = %q
`, host, root))
	c := startContainerd(t)
	pull := func(user string) (string, error) {
		args := []string{"--address", c.Address, "image", "pull", "--hosts-dir", hosts, "--snapshotter", "native"}
		if user != "" {
			args = append(args, "--user", user)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, ctr, append(args, "docker.io/corp/secret:1")...).CombinedOutput()
		return string(out), err
	}
	if out, err := pull(""); err == nil {
		t.Fatalf("an anonymous ctr pull of the private image succeeded:\n%s", out)
	}
	if out, err := pull("bob:bob-pw-5d7e"); err == nil {
		t.Fatalf("bob's ctr pull of the private image succeeded:\n%s", out)
	}
	if out, err := pull("alice:alice-pw-91c2"); err != nil {
		t.Fatalf("alice's ctr pull: %v\n%s", err, out)
	}
	if got := c.imageDigest(t, ctr, "docker.io/corp/secret:1"); got != want {
		t.Errorf("alice's pull: digest %s, want %s", got, want)
	}
}
