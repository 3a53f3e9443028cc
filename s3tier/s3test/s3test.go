// Package s3test runs a real S3-compatible server for tests, on loopback
// with its data in a temporary directory: the Versity S3 Gateway
// (versitygw, posix backend) or MinIO. .ci/run installs both; elsewhere
// tests skip when a server is missing (and fail when CI is set).
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credentials of the test server's root user.
const (
	// AccessKey is the root access key.
	AccessKey = "regcache-test"
	// SecretKey is the root secret key.
	SecretKey = "regcache-test-secret"
)

// Kind names an S3-compatible server the tests can run.
type Kind string

// The servers the tests can run.
const (
	// Versity is the Versity S3 Gateway with its posix backend.
	Versity Kind = "versitygw"
	// MinIO is a single-drive MinIO server.
	MinIO Kind = "minio"
)

// Kinds are every server kind, for tests that run against each.
var Kinds = []Kind{Versity, MinIO}

// installs says how each server is installed.
var installs = map[Kind]string{
	Versity: "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0",
	MinIO:   "go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c",
}

// Server is a versitygw process serving one bucket.
type Server struct {
	// Endpoint is http://127.0.0.1:<port>.
	Endpoint string
	// Bucket is the bucket created for the test.
	Bucket string
	// Client is a client of the server, for inspecting the bucket.
	Client *minio.Client

	t    testing.TB
	kind Kind
	bin  string
	root string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// binary finds the server's command on the PATH or in GOPATH/bin.
func binary(t testing.TB, kind Kind) string {
	t.Helper()
	name := string(kind)
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(string(bytes.TrimSpace(out)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run installs it", name)
	}
	t.Skipf("%s is not installed (%s); CI installs it", name, installs[kind])
	return ""
}

// Start runs the Versity S3 Gateway (see StartKind).
func Start(t testing.TB) *Server {
	t.Helper()
	return StartKind(t, Versity)
}

// StartKind runs a server of kind on a free loopback port with a new
// bucket, and stops it when the test ends.
func StartKind(t testing.TB, kind Kind) *Server {
	t.Helper()
	s := &Server{t: t, kind: kind, bin: binary(t, kind), root: t.TempDir(), Bucket: "regcache"}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	s.start()
	t.Cleanup(s.Stop)
	s.Client, err = minio.New(fmt.Sprintf("127.0.0.1:%d", s.port), &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Client.MakeBucket(context.Background(), s.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("creating the test bucket: %v\n%s", err, s.log)
	}
	return s
}

// start runs the process and waits until it answers.
func (s *Server) start() {
	t := s.t
	t.Helper()
	s.log = &bytes.Buffer{}
	s.done = make(chan struct{})
	for _, dir := range []string{"meta", "data"} {
		if err := os.MkdirAll(filepath.Join(s.root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	health := s.Endpoint + "/"
	switch s.kind {
	case MinIO:
		s.cmd = exec.Command(s.bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:0",
			filepath.Join(s.root, "data"))
		s.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+s.root)
		health = s.Endpoint + "/minio/health/ready"
	default:
		s.cmd = exec.Command(s.bin, "--access", AccessKey, "--secret", SecretKey, "--port", addr,
			"--quiet", "posix", "--sidecar", filepath.Join(s.root, "meta"), filepath.Join(s.root, "data"))
	}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.kind, err)
	}
	cmd, done := s.cmd, s.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if s.kind != MinIO || resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("%s exited: %v\n%s", s.kind, cmd.ProcessState, s.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered on %s:\n%s", s.kind, s.Endpoint, s.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server; the bucket's content stays for Restart.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Freeze stops the server process without killing it (SIGSTOP): its
// connections stay open and send nothing, like a store that hangs.
func (s *Server) Freeze() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Restart starts the server again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Keys lists the keys under prefix.
func (s *Server) Keys(prefix string) []string {
	var keys []string
	for o := range s.Client.ListObjects(context.Background(), s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			s.t.Fatalf("listing %s: %v", prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}
