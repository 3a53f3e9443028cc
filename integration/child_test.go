package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childCaddyEnv, set to 1, makes the test binary run as Caddy: the crash
// tests start it as a separate process they can kill.
const childCaddyEnv = "REGCACHE_TEST_CHILD_CADDY"

// childCaddy is Caddy running as a child process of the test.
type childCaddy struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

// childCaddyfile is the Caddyfile of a child mirror on port with its cache
// in storage and extra lines in its registry_cache block.
func childCaddyfile(port int, storage, block string) string {
	return fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	registry_cache {
		storage %s
		tag_ttl 1h
		upstream docker.io %s
		%s
	}
}
`, filepath.Join(filepath.Dir(storage), "caddy-data"), port, storage, hub.URL, block)
}

// startChildCaddy runs the test binary as Caddy with caddyfile and waits
// until it answers on port. The process is killed when the test ends.
func startChildCaddy(t *testing.T, port int, caddyfile string) *childCaddy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	writeFile(t, path, caddyfile)
	c := &childCaddy{log: &bytes.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "run", "--config", path, "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), childCaddyEnv+"=1", "HOME="+t.TempDir())
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting child Caddy: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.kill(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v2/", port))
		if err == nil {
			resp.Body.Close()
			if resp.Header.Get("Docker-Distribution-API-Version") == "registry/2.0" {
				return c
			}
		}
		select {
		case <-c.done:
			t.Fatalf("child Caddy exited: %v\n%s", c.cmd.ProcessState, c.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("child Caddy never answered on port %d:\n%s", port, c.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *childCaddy) kill(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Errorf("child Caddy outlived SIGKILL")
	}
}

// checkCacheIntegrity walks a cache directory: every file under blobs/
// must hash to the digest its path names, and ingest/ may hold only
// partial downloads (a data file and its sidecar) that a later fill
// continues. It returns the number of blobs.
func checkCacheIntegrity(t *testing.T, storage string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(storage, "blobs"), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != filepath.Base(path) {
			t.Errorf("cached file %s hashes to %s", path, got)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("walking the cache: %v", err)
	}
	left := listDir(t, filepath.Join(storage, "ingest"))
	for _, name := range left {
		data := strings.TrimSuffix(name, ".json")
		if !strings.HasPrefix(name, "partial-sha256-") || !slices.Contains(left, data) || !slices.Contains(left, data+".json") {
			t.Errorf("ingest/ keeps %s after a start (all: %v)", name, left)
		}
	}
	return n
}

// listDir returns the names in dir (none if it does not exist).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// ingestBytes returns the bytes of the downloads in progress (or kept
// for a later fill) in storage, without their sidecars.
func ingestBytes(storage string) int64 {
	var total int64
	entries, _ := os.ReadDir(filepath.Join(storage, "ingest"))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".json") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
	}
	return total
}

// blobURL is the mirror URL of a blob of a Docker Hub repository.
func blobURL(port int, repo, digest string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/v2/%s/blobs/%s", port, strings.TrimPrefix(repo, "library/"), digest)
}
