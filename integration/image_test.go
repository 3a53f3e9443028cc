package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// buildImage runs deploy/build-image.sh for linux/amd64 into a new
// directory and returns it.
func buildImage(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("../deploy/build-image.sh")
	cmd.Env = append(os.Environ(), "OUT="+out, "PLATFORMS=linux/amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/build-image.sh: %v\n%s", err, b)
	}
	return out
}

// fileSHA256 returns the hex SHA-256 of a file.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestContainerImage builds the container image twice (the same bytes
// both times), loads its archive into podman and into dockerd, and runs
// the image's command as a container runtime would (its root file system,
// user, environment and working directory) with a Caddyfile mounted over
// the default one, pulling an image of the test hub through it. The
// runtimes themselves cannot start containers on a machine that refuses
// setrlimit to them, so the run is done without them.
func TestContainerImage(t *testing.T) {
	requireRoot(t, "the container image test")
	podman := clientBinary(t, "podman")
	first, second := buildImage(t), buildImage(t)
	archive := filepath.Join(first, "regcache-linux-amd64.tar")
	for _, f := range []string{"oci/index.json", "regcache-linux-amd64.tar"} {
		if a, b := fileSHA256(t, filepath.Join(first, f)), fileSHA256(t, filepath.Join(second, f)); a != b {
			t.Errorf("two builds of the same tree differ in %s: %s, %s", f, a, b)
		}
	}

	p, err := layout.FromPath(filepath.Join(first, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	// index.json names the multi-platform index by the version.
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1 || !tm.Manifests[0].MediaType.IsIndex() || tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] == "" {
		t.Fatalf("index.json lists %+v, want one index named by the version", tm.Manifests)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Platform == nil || im.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatalf("the index lists %+v, want one linux/amd64 image", im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	version := cf.Config.Labels["org.opencontainers.image.version"]
	if name := tm.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; name != version {
		t.Errorf("index.json names the index %q, want the version %q", name, version)
	}
	if cf.Config.User != "1000:1000" || cf.Config.WorkingDir != "/data" || version == "" ||
		!has(cf.Config.ExposedPorts, "5000/tcp") || !has(cf.Config.Volumes, "/data") ||
		strings.Join(cf.Config.Cmd, " ") != "caddy run --config /etc/caddy/Caddyfile --adapter caddyfile" {
		t.Errorf("image config: %+v", cf.Config)
	}

	// podman load reads the archive as an OCI layout.
	root := shortTempDir(t)
	pm := []string{"--root", filepath.Join(root, "root"), "--runroot", filepath.Join(root, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	runClient(t, podman, append(pm, "load", "-i", archive)...)
	if got := runClient(t, podman, append(pm, "image", "inspect", "--format", "{{.Config.User}} {{.Labels}}", "regcache:"+version)...); !strings.Contains(got, "1000:1000") || !strings.Contains(got, version) {
		t.Errorf("podman's regcache:%s: %s", version, got)
	}

	// docker load (20.10) reads its manifest.json.
	d := startDockerd(t, `{}`)
	d.docker(t, "load", "-i", archive)
	for _, tag := range []string{"regcache:latest", "regcache:" + version} {
		if got := d.docker(t, "image", "inspect", "--format", "{{.Config.User}} {{json .Config.ExposedPorts}}", tag); got != `1000:1000 {"5000/tcp":{}}` {
			t.Errorf("docker's %s: %s", tag, got)
		}
	}

	// Run it.
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	extractImage(t, mutate.Extract(img), rootfs)
	out, err := exec.Command("chroot", "--userspec=1000:1000", rootfs, "/usr/bin/caddy", "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "regcache "+version+" caddy v2.") {
		t.Errorf("caddy version in the image: %v: %s", err, out)
	}
	// The image's own Caddyfile loads (provisioned as its user, in its
	// file system).
	validate := exec.Command("chroot", "--userspec=1000:1000", rootfs, "/usr/bin/caddy", "validate",
		"--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile")
	validate.Env = cf.Config.Env
	if out, err := validate.CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Errorf("caddy validate of the image's Caddyfile: %v\n%s", err, out)
	}
	_, want, err := hub.PushImage("library/imagetest", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	writeFile(t, filepath.Join(rootfs, "etc/caddy/Caddyfile"), fmt.Sprintf(`{
	admin off
	skip_install_trust
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	respond /healthz 200
	registry_cache {
		storage /data/cache
		upstream docker.io %s
	}
}
`, port, hub.URL))
	// The command as the runtime runs it: PATH resolves caddy to
	// /usr/bin/caddy inside the image; the working directory is entered
	// after the chroot.
	cmd := &exec.Cmd{Path: "/usr/bin/caddy", Args: cf.Config.Cmd, Env: cf.Config.Env, Dir: cf.Config.WorkingDir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the image's command: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := fmt.Sprintf("127.0.0.1:%d", port)
	waitHealthy(t, "http://"+base+"/healthz", &logs)
	got, err := crane.Digest(base+"/library/imagetest:1", crane.Insecure)
	if err != nil || got != want {
		t.Fatalf("digest through the image's mirror: %s, %v; want %s\n%s", got, err, want, logs.String())
	}
	if _, err := crane.Pull(base+"/library/imagetest:1", crane.Insecure); err != nil {
		t.Fatalf("pull through the image's mirror: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "data/caddy")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Errorf("Caddy's data directory /data/caddy: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "data/cache/blobs")); err != nil {
		t.Errorf("the cache is not in /data/cache: %v", err)
	}
}

// has reports whether a set holds k.
func has(set map[string]struct{}, k string) bool {
	_, ok := set[k]
	return ok
}

// waitHealthy waits until url answers 200.
func waitHealthy(t *testing.T, url string, logs *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer: %v\n%s", url, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// extractImage writes the image's file system (a tar stream) to dir with
// the modes and owners of its entries.
func extractImage(t *testing.T, rc io.ReadCloser, dir string) {
	t.Helper()
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
				_, err = io.Copy(f, tr)
				err = errors.Join(err, f.Close())
			}
		default:
			t.Fatalf("unexpected entry %s (type %c) in the image", h.Name, h.Typeflag)
		}
		if err == nil {
			err = os.Chown(p, h.Uid, h.Gid)
		}
		if err == nil {
			err = os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|modeBits(h.Mode))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// modeBits maps a tar mode's sticky, setuid and setgid bits to os.FileMode.
func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	return fm
}
