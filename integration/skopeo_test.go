package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// clientBinary returns the path of a real client program. In CI a missing
// client fails the test; elsewhere the test is skipped with a message.
func clientBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run installs it", name)
		}
		t.Skipf("%s is not installed (%s); CI installs it", name, installHint(name))
	}
	return p
}

// installHint says how to install a client program the tests run.
func installHint(name string) string {
	switch name {
	case "crane":
		return "go install github.com/google/go-containerregistry/cmd/crane@<the version go.mod pins>"
	case "regctl":
		return "go install github.com/regclient/regclient/cmd/regctl@<the version go.mod pins>"
	case "ctr":
		return "apt-get install containerd"
	}
	return "apt-get install " + name
}

// TestSkopeoCopiesIndexThroughMirror runs skopeo copy --all of a
// multi-arch manifest list through the mirror into a directory, then
// again from the cache. --preserve-digests makes skopeo refuse any change
// of digest; the dir: transport keeps manifests as they are.
func TestSkopeoCopiesIndexThroughMirror(t *testing.T) {
	skopeo := clientBinary(t, "skopeo")
	_, want, err := hub.PushIndex("org/skopeo", "v1", []string{"linux/amd64", "linux/arm64"}, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{})
	for _, pass := range []string{"cold", "warm"} {
		hub.Counters.Reset()
		dir := filepath.Join(t.TempDir(), "layout")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
			"docker://"+m.Host+"/org/skopeo:v1", "dir:"+dir).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: skopeo copy: %v\n%s", pass, err, out)
		}
		out, err = os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			t.Fatalf("%s: reading the copied manifest list: %v", pass, err)
		}
		if got := digestOfBytes(out); got != want {
			t.Errorf("%s: copied index digest %s, want %s", pass, got, want)
		}
		if pass == "warm" {
			wantCount(t, "warm skopeo copy: upstream requests", hub.Counters.Upstream(), 0)
		}
	}
}

// digestOfBytes returns the sha256 digest of b.
func digestOfBytes(b []byte) string {
	got, _, _ := hashBody(bytes.NewReader(b))
	return got
}
