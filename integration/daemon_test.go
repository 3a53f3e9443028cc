package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Deadlines for a client daemon: how long it may take to answer after it
// was started, and to exit after SIGTERM before it is killed.
const (
	daemonStartTimeout = time.Minute
	daemonStopTimeout  = 30 * time.Second
)

// daemon is a client daemon (containerd, dockerd) that a test runs as a
// child process, with every file it writes under dir.
type daemon struct {
	name string
	cmd  *exec.Cmd
	// dir is the daemon's private directory. It is unique, so any process
	// whose command line names it belongs to this daemon.
	dir string
	// log is the path of the file that receives the daemon's output.
	log string
	// done is closed when the daemon exited; err is then its exit error.
	done chan struct{}
	err  error
	// stopOnce makes stop run once, from a test or its cleanup.
	stopOnce sync.Once
	// reported is set once a failure showed the daemon's log.
	reported bool
}

// startDaemon starts bin with args, its output in dir/<name>.log, and
// stops it when the test ends (see stop). Call waitReady next.
func startDaemon(t *testing.T, name, dir, bin string, args ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, dir: dir, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Stdout = f
	d.cmd.Stderr = f
	// A process group of its own: a signal meant for the test does not
	// reach the daemon, and stop can kill anything the daemon left.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		_ = f.Close()
		close(d.done)
	}()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// waitReady polls ready until it succeeds. It fails the test, with the
// daemon's log, if the daemon exits first or is not ready within
// daemonStartTimeout.
func (d *daemon) waitReady(t *testing.T, ready func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(daemonStartTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			d.reported = true
			t.Fatalf("%s did not answer within %s: %v\n%s", d.name, daemonStartTimeout, err, d.logText())
		}
		select {
		case <-d.done:
			d.reported = true
			t.Fatalf("%s exited before it answered: %v\n%s", d.name, d.err, d.logText())
		case <-tick.C:
		}
	}
}

// stop sends the daemon SIGTERM, kills its process group if it has not
// exited within daemonStopTimeout, and then kills any process left that
// names the daemon's directory. When the test failed it logs the daemon's
// output. Only the first call does anything.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.stopOnce.Do(func() { d.terminate(t) })
}

// terminate does the work of stop.
func (d *daemon) terminate(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		if !d.reported {
			t.Errorf("%s exited during the test: %v", d.name, d.err)
		}
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(daemonStopTimeout):
			t.Errorf("%s did not exit within %s of SIGTERM; killing it", d.name, daemonStopTimeout)
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	}
	if left := killProcessesNaming(t, d.dir); len(left) > 0 {
		t.Errorf("%s left processes behind: %s", d.name, strings.Join(left, "; "))
	}
	if t.Failed() && !d.reported {
		t.Logf("%s log:\n%s", d.name, d.logText())
	}
}

// logText returns the end of the daemon's log.
func (d *daemon) logText() string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", d.log, err)
	}
	const limit = 32 << 10
	if len(b) > limit {
		b = append([]byte("…"), b[len(b)-limit:]...)
	}
	return string(b)
}

// killProcessesNaming kills (SIGKILL) the processes other than this one
// whose command line contains s, waits until they are gone, and returns
// their descriptions.
func killProcessesNaming(t *testing.T, s string) []string {
	t.Helper()
	pids, descs := processesNaming(s)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(daemonStopTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for len(pids) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("processes naming %s survived SIGKILL: %v", s, pids)
			break
		}
		<-tick.C
		pids, _ = processesNaming(s)
	}
	return descs
}

// processesNaming lists the processes other than this one whose command
// line contains s. Zombies have an empty command line and are not listed.
func processesNaming(s string) (pids []int, descs []string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(s)) {
			continue
		}
		pids = append(pids, pid)
		descs = append(descs, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})))
	}
	return pids, descs
}

// requireRoot skips the test, or fails it under CI, when the test does
// not run as root: the client daemons need it.
func requireRoot(t *testing.T, name string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s needs root", name)
	}
	t.Skipf("%s needs root", name)
}

// containerd is a containerd daemon of a test.
type containerd struct {
	*daemon
	// Address is the path of its gRPC socket.
	Address string
}

// startContainerd runs containerd with its root, state, sockets and
// config in a new short temporary directory (socket paths are limited to
// about 100 bytes), and stops it when the test ends. The CRI plugin is
// disabled: it would want CNI and cgroups, and ctr does not use it.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	requireRoot(t, "containerd")
	bin := clientBinary(t, "containerd")
	ctr := clientBinary(t, "ctr")
	dir := shortTempDir(t)
	c := &containerd{Address: filepath.Join(dir, "containerd.sock")}
	config := filepath.Join(dir, "config.toml")
	writeFile(t, config, fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt")))
	c.daemon = startDaemon(t, "containerd", dir, bin, "--config", config)
	c.waitReady(t, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, ctr, "--address", c.Address, "version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	})
	return c
}
