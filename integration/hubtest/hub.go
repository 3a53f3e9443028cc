package hubtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Options configure a Hub. Zero values mean defaults.
type Options struct {
	// Service is the service name of the token realm. Default:
	// "registry.hub.test".
	Service string
	// TokenLifetime is the lifetime (expires_in) of issued tokens.
	// Default: 300s.
	TokenLifetime time.Duration
	// OmitExpiresIn leaves expires_in out of token answers, so clients
	// must assume the 60s the token specification prescribes. The tokens
	// still live TokenLifetime.
	OmitExpiresIn bool
	// Users are the username → password pairs the realm accepts with
	// Basic auth.
	Users map[string]string
	// Private maps repositories to the users allowed to pull them.
	// Anonymous clients and other users get no access to them.
	Private map[string][]string
	// PullLimit, when positive, answers manifest GETs (not HEADs) beyond
	// this many with 429 TOOMANYREQUESTS. Rate-limit headers are sent on
	// every manifest answer either way, with a limit of PullLimit, or 100
	// when PullLimit is 0; then the remaining count starts over at 100
	// instead of reaching 0, as if a new window began, since the budget
	// never runs out.
	PullLimit int
	// RateWindow is the window (w=) of the rate-limit headers.
	// Default: 21600s.
	RateWindow time.Duration
	// Referrers makes the front answer /v2/<name>/referrers/<digest>
	// itself, from the manifests in the registry. Without it the front
	// answers 404, as Docker Hub does.
	Referrers bool
	// DirectBlobs makes the front serve blob GETs itself, as a registry
	// without a CDN does, instead of redirecting them to the CDN. Faults
	// on blob bodies then act on the front's answers.
	DirectBlobs bool
	// Now is the clock of token and signed URL expiry. Default: time.Now.
	Now func() time.Time
}

// Hub is a running Docker-Hub-like upstream: the distribution registry,
// a front that demands tokens like registry-1.docker.io, a token realm
// like auth.docker.io, and a CDN that serves signed blob redirects.
//
// The realm and the CDN are named "localhost", not 127.0.0.1: registry
// clients refuse a token realm or a redirect that names a loopback IP
// literal other than the registry's own host:port.
type Hub struct {
	// RegistryURL is the raw registry, without auth, for seeding content:
	// http://127.0.0.1:P.
	RegistryURL string
	// URL is the front that clients talk to: http://127.0.0.1:P.
	URL string
	// RealmURL is the token endpoint: http://localhost:P/token.
	RealmURL string
	// CDNURL is where blob GETs are redirected: http://localhost:P.
	CDNURL string
	// Service is the service name of the token realm.
	Service string
	// Counters count what the hub served.
	Counters *Counters

	opts      Options
	now       func() time.Time
	dir       string
	servers   []*http.Server
	registry  *httputil.ReverseProxy
	transport *http.Transport // to the registry
	signKey   []byte
	reg       *registry
	closeMu   sync.Mutex
	closed    bool

	mu        sync.Mutex
	tokens    map[string]tokenInfo
	pullLimit int
	pullsUsed int
	faults    []Fault
	faultGen  uint64 // counts SetFault calls
}

// Start starts the registry, the front, the token realm and the CDN, each
// on its own ephemeral loopback port. Close stops them.
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
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir, err := os.MkdirTemp("", "hubtest-")
	if err != nil {
		return nil, fmt.Errorf("creating the registry directory: %w", err)
	}
	h := &Hub{
		Service:   opts.Service,
		Counters:  &Counters{},
		opts:      opts,
		now:       opts.Now,
		dir:       dir,
		signKey:   make([]byte, 32),
		tokens:    map[string]tokenInfo{},
		pullLimit: opts.PullLimit,
	}
	if _, err := rand.Read(h.signKey); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("creating the signing key: %w", err)
	}
	if err := h.start(); err != nil {
		_ = h.Close()
		return nil, err
	}
	return h, nil
}

// start brings up the four listeners.
func (h *Hub) start() error {
	reg, err := newRegistry(h.dir)
	if err != nil {
		return err
	}
	h.reg = reg
	h.transport = http.DefaultTransport.(*http.Transport).Clone()
	if h.RegistryURL, err = h.serve(reg.app); err != nil {
		return fmt.Errorf("starting the registry: %w", err)
	}
	regURL, err := url.Parse(h.RegistryURL)
	if err != nil {
		return fmt.Errorf("parsing the registry URL: %w", err)
	}
	h.registry = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(regURL)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del("Authorization")
		},
		Transport: h.transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeOCIError(w, http.StatusBadGateway, "UNKNOWN", "registry unreachable: "+err.Error())
		},
	}
	realm, err := h.serve(http.HandlerFunc(h.serveToken))
	if err != nil {
		return fmt.Errorf("starting the token realm: %w", err)
	}
	h.RealmURL = strings.Replace(realm, "127.0.0.1", "localhost", 1) + "/token"
	cdn, err := h.serve(http.HandlerFunc(h.serveCDN))
	if err != nil {
		return fmt.Errorf("starting the CDN: %w", err)
	}
	h.CDNURL = strings.Replace(cdn, "127.0.0.1", "localhost", 1)
	if h.URL, err = h.serve(http.HandlerFunc(h.serveFront)); err != nil {
		return fmt.Errorf("starting the front: %w", err)
	}
	return nil
}

// serve runs handler on a new loopback listener and returns its URL.
func (h *Hub) serve(handler http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listening on loopback: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second, ConnContext: withConnPacer}
	h.servers = append(h.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}

// Close stops every listener, closing open connections, and removes the
// registry's storage. Calling it again does nothing.
func (h *Hub) Close() error {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	var errs []error
	for _, s := range h.servers {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing a listener: %w", err))
		}
	}
	if h.reg != nil {
		if err := h.reg.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if h.transport != nil {
		h.transport.CloseIdleConnections()
	}
	if err := os.RemoveAll(h.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing the registry directory: %w", err))
	}
	return errors.Join(errs...)
}

// Host returns host:port of the front, as image references name it.
func (h *Hub) Host() string { return strings.TrimPrefix(h.URL, "http://") }

// Ref returns an image reference to repo at the front: host/repo:tag, or
// host/repo@digest when tagOrDigest is a digest.
func (h *Hub) Ref(repo, tagOrDigest string) string {
	if strings.Contains(tagOrDigest, ":") {
		return h.Host() + "/" + repo + "@" + tagOrDigest
	}
	return h.Host() + "/" + repo + ":" + tagOrDigest
}

// SetPullLimit changes the pull budget (0: unlimited) and resets the
// number of pulls spent.
func (h *Hub) SetPullLimit(n int) {
	h.mu.Lock()
	h.pullLimit, h.pullsUsed = n, 0
	h.mu.Unlock()
}
