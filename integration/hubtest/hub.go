package hubtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the registry's storage
	"github.com/sirupsen/logrus"
)

// Options configure a Hub; zero values mean defaults.
type Options struct {
	// Service is the token service name. Default: "registry.hub.test".
	Service string
	// TokenLifetime is the expires_in of issued tokens. Default: 300s.
	TokenLifetime time.Duration
	// OmitExpiresIn leaves expires_in out of token answers.
	OmitExpiresIn bool
	// Users are the username -> password pairs the realm accepts.
	Users map[string]string
	// Private maps repositories to the users allowed to pull them;
	// anonymous clients and other users are refused.
	Private map[string][]string
	// PullLimit, when positive, answers manifest GETs beyond this many
	// with 429 TOOMANYREQUESTS. Rate-limit headers are always sent.
	PullLimit int
	// RateWindow is the window reported in rate-limit headers.
	// Default: 21600s.
	RateWindow time.Duration
	// Referrers makes the front answer the referrers API; without it the
	// front answers 404, as Docker Hub does.
	Referrers bool
}

// Hub is a running Docker-Hub-like upstream.
type Hub struct {
	// RegistryURL is the raw registry, without auth, for seeding content.
	RegistryURL string
	// URL is the front that clients (and regcache) talk to.
	URL string
	// RealmURL is the token endpoint.
	RealmURL string
	// CDNURL is the blob redirect target.
	CDNURL string
	// Service is the token service name.
	Service string
	// Counters count what the hub served.
	Counters *Counters

	opts     Options
	dir      string
	servers  []*http.Server
	registry *httputil.ReverseProxy
	regURL   *url.URL
	signKey  []byte
	cancel   context.CancelFunc

	mu        sync.Mutex
	tokens    map[string]tokenInfo
	pullsUsed int
}

// Start starts the registry, the front, the token realm and the CDN on
// 127.0.0.1.
func Start(opts Options) (*Hub, error) {
	if opts.Service == "" {
		opts.Service = "registry.hub.test"
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = 300 * time.Second
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = 21600 * time.Second
	}
	dir, err := os.MkdirTemp("", "hubtest-")
	if err != nil {
		return nil, err
	}
	h := &Hub{opts: opts, dir: dir, Service: opts.Service, Counters: &Counters{}, tokens: map[string]tokenInfo{}}
	h.signKey = make([]byte, 32)
	_, _ = rand.Read(h.signKey)
	if err := h.start(); err != nil {
		_ = h.Close()
		return nil, err
	}
	return h, nil
}

// start brings up the four listeners.
func (h *Hub) start() error {
	logrus.SetLevel(logrus.ErrorLevel)
	logrus.SetOutput(io.Discard)
	cfg, err := configuration.Parse(strings.NewReader(fmt.Sprintf(`
version: 0.1
log:
  level: error
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
`, h.dir+"/registry")))
	if err != nil {
		return fmt.Errorf("registry configuration: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	app := handlers.NewApp(ctx, cfg)

	regURL, err := h.serve(app)
	if err != nil {
		return err
	}
	h.RegistryURL = regURL
	h.regURL, _ = url.Parse(regURL)
	h.registry = httputil.NewSingleHostReverseProxy(h.regURL)
	h.registry.ErrorLog = nil

	realm, err := h.serve(http.HandlerFunc(h.serveToken))
	if err != nil {
		return err
	}
	// Front, realm and CDN are named localhost, each on its own port:
	// clients refuse a realm, or a redirect, to a bare loopback IP other
	// than the registry's own host:port. Another port is another origin,
	// so the CDN must still never receive the registry's Authorization.
	h.RealmURL = strings.Replace(realm, "127.0.0.1", "localhost", 1) + "/token"
	cdn, err := h.serve(http.HandlerFunc(h.serveCDN))
	if err != nil {
		return err
	}
	h.CDNURL = strings.Replace(cdn, "127.0.0.1", "localhost", 1)
	front, err := h.serve(http.HandlerFunc(h.serveFront))
	if err != nil {
		return err
	}
	h.URL = strings.Replace(front, "127.0.0.1", "localhost", 1)
	return nil
}

// serve runs handler on a new loopback listener and returns its URL.
func (h *Hub) serve(handler http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	h.servers = append(h.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}

// Close stops every listener and removes the registry's storage.
func (h *Hub) Close() error {
	var errs []error
	for _, s := range h.servers {
		errs = append(errs, s.Close())
	}
	if h.cancel != nil {
		h.cancel()
	}
	errs = append(errs, os.RemoveAll(h.dir))
	return errors.Join(errs...)
}

// Host returns host:port of the front, as image references name it.
func (h *Hub) Host() string { return strings.TrimPrefix(h.URL, "http://") }

// Ref returns an image reference to repo at the front: repo:tag, or
// repo@digest when tagOrDigest is a digest.
func (h *Hub) Ref(repo, tagOrDigest string) string {
	if strings.Contains(tagOrDigest, ":") {
		return h.Host() + "/" + repo + "@" + tagOrDigest
	}
	return h.Host() + "/" + repo + ":" + tagOrDigest
}

// SetPullLimit changes the pull budget (0: unlimited) and resets its use.
func (h *Hub) SetPullLimit(n int) {
	h.mu.Lock()
	h.opts.PullLimit, h.pullsUsed = n, 0
	h.mu.Unlock()
}
