package hubtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the registry's storage driver
	"github.com/sirupsen/logrus"
)

// registry is the embedded distribution registry.
type registry struct {
	app    *handlers.App
	cancel context.CancelFunc
}

// registryConfig is the registry's configuration: filesystem storage, no
// auth, warnings and errors only, no access log, no upload purging.
const registryConfig = `
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  secret: %s
`

// newRegistry builds the distribution registry storing under dir.
func newRegistry(dir string) (r *registry, err error) {
	quietRegistryLogs()
	root, err := json.Marshal(filepath.Join(dir, "registry"))
	if err != nil {
		return nil, fmt.Errorf("encoding the storage path: %w", err)
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("making the registry secret: %w", err)
	}
	cfg, err := configuration.Parse(strings.NewReader(fmt.Sprintf(registryConfig, root, hex.EncodeToString(secret))))
	if err != nil {
		return nil, fmt.Errorf("parsing the registry configuration: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		// NewApp panics on a configuration it cannot use.
		if p := recover(); p != nil {
			cancel()
			r, err = nil, fmt.Errorf("starting the registry: %v", p)
		}
	}()
	return &registry{app: handlers.NewApp(ctx, cfg), cancel: cancel}, nil
}

// quietLogs guards the one-time setup of the logrus logger.
var quietLogs sync.Once

// quietRegistryLogs limits the registry's logging, done through the
// process-wide logrus logger, to warnings and errors, and drops its
// "response completed with error" lines for 4xx answers: a 404 for a
// missing tag or blob is an ordinary answer here, not an error.
func quietRegistryLogs() {
	quietLogs.Do(func() {
		logger := logrus.StandardLogger()
		if logger.GetLevel() > logrus.WarnLevel {
			logger.SetLevel(logrus.WarnLevel)
		}
		logger.SetOutput(&clientErrorFilter{out: logger.Out})
	})
}

// clientErrorFilter passes log lines on, except the registry's reports of
// answers with a 4xx status.
type clientErrorFilter struct {
	out io.Writer
}

// Write passes one formatted log entry on, or drops it.
func (f *clientErrorFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("response completed with error")) && bytes.Contains(p, []byte("http.response.status=4")) {
		return len(p), nil
	}
	return f.out.Write(p)
}

// close shuts the registry down.
func (r *registry) close() error {
	defer r.cancel()
	if err := r.app.Shutdown(); err != nil {
		return fmt.Errorf("shutting the registry down: %w", err)
	}
	return nil
}
