package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDockerPullsThroughRegistryMirror runs a Docker daemon whose
// daemon.json names the mirror in registry-mirrors, and pulls a Docker Hub
// image by its short name, a multi-arch index, and an image of another
// registry by path prefix (mirror/ghcr.io/...). Each image is pulled cold,
// removed, and pulled again from the cache. Without a network the daemon
// cannot fall back to Docker Hub, and with one a fallback would pull other
// digests than the ones pushed here.
func TestDockerPullsThroughRegistryMirror(t *testing.T) {
	_, busybox, err := hub.PushImage("library/busybox", "latest", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	_, alpine, err := hub.PushIndex("library/alpine", "3.19", []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, true)
	if err != nil {
		t.Fatal(err)
	}
	_, app, err := hub.PushImage("owner/dockerapp", "1", 1, 4096, true)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf("upstream docker.io %s\n\t\tupstream ghcr.io %s", hub.URL, hub.URL)})
	d := startDockerd(t, fmt.Sprintf(`{
  "registry-mirrors": ["http://%s"],
  "insecure-registries": [%q]
}`, m.Host, m.Host))

	pulls := []struct {
		ref  string // as given to docker pull
		repo string // as RepoDigests spells it
		want string
	}{
		{"busybox", "busybox", busybox},
		{"library/alpine:3.19", "alpine", alpine},
		{m.Host + "/ghcr.io/owner/dockerapp:1", m.Host + "/ghcr.io/owner/dockerapp", app},
	}
	for _, pass := range []string{"cold", "warm"} {
		for _, p := range pulls {
			hub.Counters.Reset()
			d.docker(t, "pull", p.ref)
			if got := d.repoDigest(t, p.ref, p.repo); got != p.want {
				t.Errorf("%s pull of %s: RepoDigests digest %s, want %s", pass, p.ref, got, p.want)
			}
			switch pass {
			case "cold":
				if hub.Counters.ManifestGET.Load() == 0 || hub.Counters.CDNGET.Load() == 0 {
					t.Errorf("cold pull of %s did not fill the cache from the hub: %s", p.ref, hub.Counters)
				}
			case "warm":
				wantCount(t, "warm docker pull of "+p.ref+": upstream requests", hub.Counters.Upstream(), 0)
			}
			d.docker(t, "rmi", p.ref)
			if d.hasImage(t, p.ref) {
				t.Fatalf("%s is still in the daemon after docker rmi", p.ref)
			}
		}
	}
}

// dockerd is a Docker daemon of a test and the client that talks to it.
type dockerd struct {
	*daemon
	// host is the daemon's socket as DOCKER_HOST spells it.
	host string
	// client is the docker command-line client.
	client string
}

// startDockerd runs a Docker daemon, as root and without networking for
// containers, with daemonJSON as its daemon.json and every file it
// writes in a short temporary directory, on a containerd of its own (as
// Debian's docker.service runs it on the system containerd), and stops
// both when the test ends.
//
// The flags: --data-root, --exec-root, --pidfile and -H keep the daemon
// out of /var/lib/docker, /var/run/docker and /var/run/docker.sock;
// --containerd avoids the containerd that dockerd would otherwise start
// itself (which creates /opt/containerd); vfs needs no kernel support;
// --bridge none, --iptables=false, --ip6tables=false and
// --ip-forward=false keep it from touching the host's network
// configuration. daemon.json's deprecated-key-path keeps 20.10's trust
// key out of /etc/docker (later versions ignore the option).
func startDockerd(t *testing.T, daemonJSON string) *dockerd {
	t.Helper()
	requireRoot(t, "dockerd")
	bin := debianBinary(t, "/usr/sbin/dockerd", "docker.io")
	// The client of the same package: a newer docker on the PATH may speak
	// an API this daemon does not.
	client := debianBinary(t, "/usr/bin/docker", "docker.io")
	c := startContainerd(t)
	dir := shortTempDir(t)
	var cfg map[string]any
	if err := json.Unmarshal([]byte(daemonJSON), &cfg); err != nil {
		t.Fatalf("daemon.json: %v", err)
	}
	cfg["deprecated-key-path"] = filepath.Join(dir, "key.json")
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "daemon.json")
	writeFile(t, config, string(b))
	sock := filepath.Join(dir, "docker.sock")
	d := &dockerd{host: "unix://" + sock, client: client}
	d.daemon = startDaemon(t, "dockerd", dir, bin,
		"--config-file", config,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", d.host,
		"--containerd", c.Address,
		"--storage-driver", "vfs",
		"--bridge", "none",
		"--iptables=false",
		"--ip6tables=false",
		"--ip-forward=false",
		"--log-level", "debug",
	)
	clientConfig := t.TempDir()
	d.waitReady(t, func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, client, "-H", d.host, "version", "--format", "{{.Server.Version}}")
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+clientConfig)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	return d
}

// docker runs the client against the daemon and returns its output.
func (d *dockerd) docker(t *testing.T, args ...string) string {
	t.Helper()
	return runClient(t, d.client, append([]string{"-H", d.host}, args...)...)
}

// repoDigest returns the digest of the repo@digest entry of ref's
// RepoDigests.
func (d *dockerd) repoDigest(t *testing.T, ref, repo string) string {
	t.Helper()
	out := d.docker(t, "image", "inspect", "--format", "{{json .RepoDigests}}", ref)
	var digests []string
	if err := json.Unmarshal([]byte(out), &digests); err != nil {
		t.Fatalf("RepoDigests of %s: %v: %s", ref, err, out)
	}
	for _, rd := range digests {
		if dgst, ok := strings.CutPrefix(rd, repo+"@"); ok {
			return dgst
		}
	}
	t.Fatalf("RepoDigests of %s have no %s@ entry: %s", ref, repo, out)
	return ""
}

// hasImage reports whether the daemon has an image named ref.
func (d *dockerd) hasImage(t *testing.T, ref string) bool {
	t.Helper()
	cmd := exec.Command(d.client, "-H", d.host, "image", "inspect", "--format", "{{.Id}}", ref)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		return true
	}
	if !strings.Contains(strings.ToLower(string(out)), "no such image") {
		t.Fatalf("docker image inspect %s: %v\n%s", ref, err, out)
	}
	return false
}

// debianBinary returns path, a program of a Debian package, if it is
// installed. It fails the test under CI (where .ci/run installs the
// package) and skips it otherwise.
func debianBinary(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run installs %s", path, pkg)
		}
		t.Skipf("%s is not installed (apt-get install %s); CI installs it", path, pkg)
	}
	return path
}

// TestDockerLoginPullsPrivateImage logs a real Docker client in to the
// mirror (docker login) with credentials for the upstream: the user the
// upstream allows pulls the private image, while a logged-out client and a
// user the upstream refuses get an error, with the image on the mirror's
// disk all along.
func TestDockerLoginPullsPrivateImage(t *testing.T) {
	h := privateHub(t)
	_, want, err := h.PushImage("corp/secret", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{upstreams: "upstream docker.io {\n\t\t\turl " + h.URL + "\n\t\t\ttrusted_realm localhost\n\t\t}"})
	d := startDockerd(t, fmt.Sprintf(`{"insecure-registries": [%q]}`, m.Host))
	config := t.TempDir()
	docker := func(stdin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, d.client, append([]string{"-H", d.host}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+config, "DOCKER_CONFIG="+config)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	image := m.Host + "/corp/secret:1"
	if out, err := docker("", "pull", image); err == nil {
		t.Fatalf("a logged-out client pulled the private image: %s", out)
	}
	if out, err := docker("wrong", "login", m.Host, "-u", "alice", "--password-stdin"); err == nil {
		t.Errorf("docker login with a wrong password succeeded: %s", out)
	}
	if out, err := docker("alice-pw-91c2", "login", m.Host, "-u", "alice", "--password-stdin"); err != nil {
		t.Fatalf("docker login as alice: %v\n%s", err, out)
	}
	if out, err := docker("", "pull", image); err != nil {
		t.Fatalf("alice's docker pull: %v\n%s", err, out)
	}
	if got := d.repoDigest(t, image, m.Host+"/corp/secret"); got != want {
		t.Errorf("alice's pull: digest %s, want %s", got, want)
	}
	if out, err := docker("", "rmi", image); err != nil {
		t.Fatalf("docker rmi: %v\n%s", err, out)
	}
	if out, err := docker("bob-pw-5d7e", "login", m.Host, "-u", "bob", "--password-stdin"); err != nil {
		t.Fatalf("docker login as bob: %v\n%s", err, out)
	}
	h.Counters.Reset()
	if out, err := docker("", "pull", image); err == nil {
		t.Errorf("bob pulled the private image from the cache: %s", out)
	}
	wantCount(t, "bob's refused pull: blob GETs at the CDN", h.Counters.CDNGET.Load(), 0)
}
