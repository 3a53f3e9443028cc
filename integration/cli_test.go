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

// runClient runs a client program with HOME in a temporary directory (so
// no user configuration leaks in) and returns its trimmed output.
func runClient(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	dockerConfig := t.TempDir()
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "DOCKER_CONFIG="+dockerConfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestCraneAndRegctlByPathPrefix pulls through the mirror with the crane
// and regctl command-line clients, naming the registry in the path
// (mirror/ghcr.io/owner/app), cold and then from the cache.
func TestCraneAndRegctlByPathPrefix(t *testing.T) {
	crane := clientBinary(t, "crane")
	regctl := clientBinary(t, "regctl")
	_, want, err := hub.PushImage("owner/cli", "1", 2, 8192, true)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io %s\n\t\tupstream ghcr.io %s", hub.URL, hub.URL)})
	ref := m.Host + "/ghcr.io/owner/cli:1"
	for _, pass := range []string{"cold", "warm"} {
		hub.Counters.Reset()
		if got := runClient(t, crane, "digest", "--insecure", ref); got != want {
			t.Errorf("%s: crane digest %s, want %s", pass, got, want)
		}
		runClient(t, crane, "pull", "--insecure", "--format", "oci", ref, filepath.Join(t.TempDir(), "oci"))
		host := "reg=" + m.Host + ",tls=disabled"
		if got := runClient(t, regctl, "image", "digest", "--host", host, ref); got != want {
			t.Errorf("%s: regctl image digest %s, want %s", pass, got, want)
		}
		runClient(t, regctl, "image", "copy", "--host", host, ref, "ocidir://"+filepath.Join(t.TempDir(), "layout")+":1")
		if pass == "warm" {
			wantCount(t, "warm crane and regctl pulls: upstream requests", hub.Counters.Upstream(), 0)
		}
	}
}
