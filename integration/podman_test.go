package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestPodmanPullsThroughRegistryMirror configures the mirror as a
// [[registry.mirror]] of docker.io in registries.conf (the upstream name
// itself is unreachable here) and pulls with podman on vfs storage in a
// private root, twice: the second pull, into an empty store, is served
// from the cache.
func TestPodmanPullsThroughRegistryMirror(t *testing.T) {
	podman := clientBinary(t, "podman")
	_, want, err := hub.PushImage("library/podtest", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	policy := filepath.Join(dir, "policy.json")
	writeFile(t, conf, fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = %q
insecure = true
`, m.Host))
	writeFile(t, policy, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
	for _, pass := range []string{"cold", "warm"} {
		hub.Counters.Reset()
		root := shortTempDir(t) // podman limits the runroot path to 50 characters
		args := []string{"--root", filepath.Join(root, "root"), "--runroot", filepath.Join(root, "run"),
			"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
		runClient(t, podman, append(args, "pull", "--signature-policy", policy, "docker.io/library/podtest:1")...)
		got := runClient(t, podman, append(args, "image", "inspect", "--format", "{{.Digest}}", "docker.io/library/podtest:1")...)
		if got != want {
			t.Errorf("%s: podman image digest %s, want %s", pass, got, want)
		}
		if pass == "cold" && hub.Counters.ManifestGET.Load() == 0 {
			t.Errorf("cold pull did not go through the mirror: %s", hub.Counters)
		}
		if pass == "warm" {
			wantCount(t, "warm podman pull: upstream requests", hub.Counters.Upstream(), 0)
		}
	}
}

// writeFile writes a test file.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// shortTempDir returns a temporary directory with a short path, removed
// when the test ends.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
