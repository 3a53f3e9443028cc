package upstream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/episode"
)

// Defaults of Options.
const (
	// DefaultDialTimeout bounds connecting to an endpoint by default: 10s.
	DefaultDialTimeout = 10 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for response headers by
	// default: 30s.
	DefaultResponseHeaderTimeout = 30 * time.Second
	// DefaultStallTimeout is how long a body may send no byte by default:
	// 30s.
	DefaultStallTimeout = 30 * time.Second
	// DefaultFailureCooldown is how long a failed endpoint is skipped by
	// default: 30s.
	DefaultFailureCooldown = 30 * time.Second
)

// Config describes one upstream registry.
type Config struct {
	// Name is the registry's name as clients know it ("docker.io"); used in
	// logs and errors. Default: the host of the first endpoint.
	Name string
	// Endpoints are base URLs of the registry API ("https://registry-1.docker.io"),
	// tried in order. http and https are allowed; a path prefix is kept.
	Endpoints []string
	// Username authenticates to the token realm (Bearer) or to the registry
	// itself (Basic). Optional.
	Username string
	// Password goes with Username. It is never logged nor put in an error.
	Password string
	// TrustedRealmHosts are further host names (no port) that may receive
	// the credentials as a token realm, besides the endpoint's own host and
	// the hosts of its registrable domain (auth.docker.io for
	// registry-1.docker.io). An IP or single-label realm host (127.0.0.1,
	// localhost) is trusted only when it is the endpoint's own host.
	TrustedRealmHosts []string
	// Namespace is the registry's name as containerd's ns query parameter
	// carries it ("ghcr.io"). When set, it is sent with every registry
	// request to an endpoint whose host is not Origin: such an endpoint is
	// a mirror of the registry (another regcache, say), and the parameter
	// tells it which registry the repository belongs to. Empty: never sent.
	Namespace string
	// Origin is the registry's own API host, with its port when not the
	// scheme's default ("registry-1.docker.io"). Endpoints on this host get
	// no ns parameter. Empty: every endpoint is treated as a mirror.
	Origin string
}

// Options tune a Client; zero values mean defaults.
type Options struct {
	// Logger receives the client's logs; the caller names it. Default: a
	// no-op logger.
	Logger *zap.Logger
	// Transport is the base transport. Default: a clone of
	// http.DefaultTransport that never decompresses bodies, speaks
	// HTTP/1.1 only, keeps 64 idle connections per host, DialTimeout, a 10s TLS
	// handshake timeout, ResponseHeaderTimeout, a 90s idle timeout, and
	// the dial guard (see AllowedNetworks). A transport given here must
	// not decompress either (an *http.Transport needs DisableCompression),
	// or bodies would no longer match their digests; it has no dial guard.
	Transport http.RoundTripper
	// AllowedNetworks are internal networks (loopback, link-local,
	// private: see AddrClass) that redirects and token realms may lead to
	// even though no endpoint of the upstream is in their class. The
	// classes of the endpoints come from the configuration: their literal
	// addresses, localhost, and their names as resolved once, in the
	// background, after New (a name that does not resolve then counts as
	// public; until the answers are in, only the literal ones count). Every other
	// internal address is refused at dial time, on the resolved address,
	// with an error wrapping ErrInternalAddress (default transport only).
	// Connections to an endpoint's own host are never refused. Default:
	// none.
	AllowedNetworks []netip.Prefix
	// PublicEndpoints says the endpoints are known public hosts (the
	// well-known registries): their names are not resolved to learn the
	// classes of networks they live in (see AllowedNetworks).
	PublicEndpoints bool
	// DialTimeout bounds connecting (default transport only). Default:
	// DefaultDialTimeout (10s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers (default
	// transport only). Default: DefaultResponseHeaderTimeout (30s).
	ResponseHeaderTimeout time.Duration
	// StallTimeout fails a response body read that waits this long for a
	// byte, with an error wrapping ErrStalled. Default:
	// DefaultStallTimeout (30s).
	StallTimeout time.Duration
	// FailureCooldown is how long a failed endpoint is skipped. Default:
	// DefaultFailureCooldown (30s).
	FailureCooldown time.Duration
	// Now is the clock used for token lifetimes, cooldowns and health.
	// Default: time.Now.
	Now func() time.Time
	// OnResponse, when set, is called once per HTTP exchange with an
	// upstream host (registry, token realm or redirect target), from the
	// goroutine of the request. It must be safe for concurrent use.
	OnResponse func(Exchange)
	// RateLimitReserve is the part of the pull budget the upstream reports
	// (ratelimit-remaining) that is never spent: MayGet holds back counted
	// requests while the last report is at or below it. Default: 0, hold
	// back only once the budget is spent.
	RateLimitReserve int
	// BudgetProbe is how long a spent budget holds back counted requests
	// before MayGet probes it again with a HEAD, unless a 429 asked for a
	// longer Retry-After or a newer answer reports budget sooner. Default:
	// DefaultBudgetProbe.
	BudgetProbe time.Duration
}

// WithDefaults returns o with the default of every field left zero (or
// less) filled in: the values New runs with. A negative RateLimitReserve
// counts as 0. Transport has no default here: New builds its own
// transport around the dial guard when it is nil.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.FailureCooldown <= 0 {
		o.FailureCooldown = DefaultFailureCooldown
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.RateLimitReserve = max(o.RateLimitReserve, 0)
	if o.BudgetProbe <= 0 {
		o.BudgetProbe = DefaultBudgetProbe
	}
	return o
}

// Exchange describes one HTTP exchange with an upstream host, for metrics.
type Exchange struct {
	// Upstream is the registry's name.
	Upstream string
	// Endpoint is the base URL of the endpoint the exchange served.
	Endpoint string
	// Method is the HTTP method.
	Method string
	// Kind is "registry", "token" or "redirect".
	Kind string
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// Duration is the time until the response headers (or the error).
	Duration time.Duration
	// Err is the transport error, if any.
	Err error
}

// Client is a client of one upstream registry, safe for concurrent use.
type Client struct {
	cfg Config
	// opts are the options, with their defaults; log and now are its
	// Logger and Now.
	opts      Options
	log       *zap.Logger
	now       func() time.Time
	http      *http.Client
	endpoints []*endpoint
	tokens    tokenCache
	budget    budget
	guard     *dialGuard
	// defaultID is the identity of the configured credentials.
	defaultID string
}

// New returns a client for cfg. Every endpoint must be an http or https URL
// with a host and without user info, query or fragment; trailing slashes
// are dropped.
func New(cfg Config, opts Options) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("upstream %s: no endpoint", cfg.Name)
	}
	opts = opts.WithDefaults()
	opts.AllowedNetworks = slices.Clone(opts.AllowedNetworks)
	c := &Client{
		opts:   opts,
		log:    opts.Logger,
		now:    opts.Now,
		budget: budget{reserve: opts.RateLimitReserve, probe: opts.BudgetProbe},
	}
	for _, raw := range cfg.Endpoints {
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil {
			return nil, fmt.Errorf("upstream %s: endpoint: %w", cfg.Name, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" ||
			u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return nil, fmt.Errorf("upstream %s: endpoint %q must be an http(s) URL with a host and without user info, query or fragment",
				cfg.Name, redactURL(u))
		}
		ep := &endpoint{base: u}
		if cfg.Namespace != "" && !strings.EqualFold(u.Host, cfg.Origin) {
			ep.ns = cfg.Namespace
		}
		c.endpoints = append(c.endpoints, ep)
	}
	if cfg.Name == "" {
		cfg.Name = c.endpoints[0].base.Host
	}
	cfg.Endpoints = slices.Clone(cfg.Endpoints)
	cfg.TrustedRealmHosts = slices.Clone(cfg.TrustedRealmHosts)
	c.cfg = cfg
	c.defaultID = credentials{cfg.Username, cfg.Password}.id()
	for _, ep := range c.endpoints {
		ep.down = episode.New(c.log, zapcore.WarnLevel, "upstream endpoint failed", episode.Options{Now: c.now})
	}
	// The guard resolves the endpoints' names now only when it guards the
	// transport.
	var lookup lookupFunc
	if opts.Transport == nil {
		lookup = lookupIP
	}
	c.guard = newDialGuard(cfg.Name, c.endpoints, opts.AllowedNetworks, lookup, opts.PublicEndpoints, c.log, episode.Options{Now: c.now})
	base := opts.Transport
	if base == nil {
		base = defaultTransport(opts.DialTimeout, opts.ResponseHeaderTimeout, c.guard)
	}
	c.http = &http.Client{
		Transport:     &authTransport{base: base, client: c},
		CheckRedirect: c.checkRedirect,
	}
	return c, nil
}

// defaultTransport is a clone of http.DefaultTransport tuned for a registry:
// it never decompresses (bytes must stay exactly as the upstream sent them),
// speaks HTTP/1.1 (each request of a large download on a connection of its
// own), and guard checks every connection it makes.
func defaultTransport(dial, header time.Duration, guard *dialGuard) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = guard.dialContext(&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second})
	t.Proxy = guard.proxy(t.Proxy)
	t.DisableCompression = true
	// HTTP/1.1 only: a blob body over HTTP/2 came about 2.5x slower than
	// over HTTP/1.1 here (one large stream over TLS), and the ranges of a
	// fill split over several connections would share one HTTP/2
	// connection, so a link that caps each connection would cap them all.
	t.ForceAttemptHTTP2 = false
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	t.MaxIdleConnsPerHost = 64
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = header
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// Name returns the registry's name.
func (c *Client) Name() string { return c.cfg.Name }

// Close closes the client's idle connections, so that a configuration
// that is unloaded leaves none behind; requests in flight finish. The
// client stays usable.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

// InternalRefusals returns how many connections to internal addresses the
// dial guard refused (see Options.AllowedNetworks).
func (c *Client) InternalRefusals() int64 { return c.guard.refusals.Load() }

// Request is one read request to the registry API of the upstream.
type Request struct {
	// Method is GET or HEAD.
	Method string
	// Repository is the repository at the upstream ("library/alpine"),
	// already validated by the caller; empty with an empty Path for "/v2/".
	Repository string
	// Path follows "/v2/<repository>/": "manifests/latest",
	// "blobs/sha256:…", "tags/list", "referrers/sha256:…".
	Path string
	// Query is added to the URL (tags pagination, referrers filters).
	// Optional.
	Query url.Values
	// Header is forwarded as is (Accept, Range, If-None-Match…), except
	// Authorization, which the client sets itself.
	Header http.Header
	// Credentials are those the request authenticates with: a client's
	// own (see Login), or, when zero, the configured ones.
	Credentials Credentials
}

// check validates the parts of req the client relies on.
func (req Request) check() error {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return fmt.Errorf("method %q is not supported", req.Method)
	}
	if (req.Repository == "") != (req.Path == "") {
		return errors.New("repository and path must both be set, or both be empty for /v2/")
	}
	return nil
}

// Do performs req against the first usable endpoint with authentication,
// following redirects. It returns the response when the final status is 2xx
// or 304; the caller closes its body. Any other status returns a nil
// response and an *Error. The body fails a read that waits longer than the
// stall timeout with an error wrapping ErrStalled, and the cancellation of
// ctx aborts it.
//
// Endpoints are tried in order, skipping those in their failure cooldown
// unless every one is. A transport error or a 5xx or 429 answer marks the
// endpoint failed and moves on; any other answer is final. When every
// endpoint failed, Do returns the last *Error if one answered, else an
// error wrapping ErrUnavailable and the last cause.
func (c *Client) Do(ctx context.Context, req Request) (*http.Response, error) {
	if err := req.check(); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", c.cfg.Name, err)
	}
	var lastAnswer *Error
	var lastErr error
	for _, ep := range c.order() {
		resp, err := c.doEndpoint(ctx, ep, req)
		if err == nil {
			ep.succeeded(c.now())
			ep.down.End(zap.String("upstream", c.cfg.Name), zap.String("endpoint", ep.base.String()))
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upstream %s: %w", c.cfg.Name, context.Cause(ctx))
		}
		var ue *Error
		if errors.As(err, &ue) {
			if ue.Status < 500 && ue.Status != http.StatusTooManyRequests {
				ep.succeeded(c.now())
				ep.down.End(zap.String("upstream", c.cfg.Name), zap.String("endpoint", ep.base.String()))
				return nil, err
			}
			lastAnswer = ue
		}
		ep.failed(c.now(), c.opts.FailureCooldown, err)
		// Once per episode: an upstream that is down fails every request.
		ep.down.Event(zap.String("upstream", c.cfg.Name), zap.String("endpoint", ep.base.String()), zap.Error(err))
		lastErr = err
	}
	if lastAnswer != nil {
		return nil, lastAnswer
	}
	return nil, fmt.Errorf("upstream %s: %w: %w", c.cfg.Name, ErrUnavailable, lastErr)
}

// doEndpoint performs req against one endpoint, retrying once after a 401
// that carries a usable challenge.
func (c *Client) doEndpoint(ctx context.Context, ep *endpoint, req Request) (*http.Response, error) {
	target := ep.url(req)
	scope := ""
	if req.Repository != "" {
		scope = "repository:" + req.Repository + ":pull"
	}
	cred := c.credentialsFor(req)
	for attempt := 0; ; attempt++ {
		auth, err := c.authorization(ctx, ep, scope, cred, attempt > 0)
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithCancel(withHop(ctx, hop{
			kind: kindRegistry, endpoint: ep.base.String(), origin: ep.base, auth: auth,
		}))
		hreq, err := http.NewRequestWithContext(rctx, req.Method, target.String(), nil)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("upstream %s: building request: %w", c.cfg.Name, err)
		}
		for k, vs := range req.Header {
			if !strings.EqualFold(k, "Authorization") {
				hreq.Header[k] = slices.Clone(vs)
			}
		}
		if ce := c.log.Check(zapcore.DebugLevel, "upstream request"); ce != nil {
			ce.Write(zap.String("upstream", c.cfg.Name), zap.String("endpoint", ep.base.String()),
				zap.String("method", req.Method), zap.String("repository", req.Repository),
				zap.String("path", req.Path), zap.Int("attempt", attempt+1))
		}
		resp, err := c.http.Do(hreq)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("upstream %s: %s %s: %w", c.cfg.Name, req.Method, redactURL(target), unwrapURLError(err))
		}
		if ce := c.log.Check(zapcore.DebugLevel, "upstream response"); ce != nil {
			ce.Write(zap.String("upstream", c.cfg.Name), zap.String("endpoint", ep.base.String()),
				zap.String("method", req.Method), zap.String("repository", req.Repository),
				zap.String("path", req.Path), zap.Int("status", resp.StatusCode))
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			chs := ParseChallenges(strings.Join(resp.Header.Values("Www-Authenticate"), ", "))
			// Only the endpoint's own challenge is learned: a redirect target
			// that asks for credentials gets none (they are the endpoint's),
			// and must not make the endpoint use another host's realm.
			fromEndpoint := resp.Request != nil && sameOrigin(resp.Request.URL, ep.base)
			e := errorFromResponse(c.cfg.Name, resp)
			cancel()
			ch, ok := pickChallenge(chs)
			if !ok || !fromEndpoint || (ch.Scheme == schemeBasic && cred.empty()) {
				return nil, e
			}
			ep.setChallenge(ch)
			if s := ch.Params["scope"]; s != "" && ch.Scheme == schemeBearer {
				scope = s
			}
		case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusNotModified:
			// A body that stalls puts its endpoint in cooldown, so that the
			// request that continues it (a fill resumes from its last byte)
			// goes to the next endpoint.
			body := newStallBody(resp.Body, c.cfg.Name, c.opts.StallTimeout, cancel, func() {
				err := fmt.Errorf("%w: no byte for %s", ErrStalled, c.opts.StallTimeout)
				ep.failed(c.now(), c.opts.FailureCooldown, err)
				c.log.Warn("upstream endpoint failed", zap.String("upstream", c.cfg.Name),
					zap.String("endpoint", ep.base.String()), zap.Error(err))
			})
			body.ep = ep
			resp.Body = body
			return resp, nil
		default:
			e := errorFromResponse(c.cfg.Name, resp)
			cancel()
			return nil, e
		}
	}
}

// Demote puts the endpoint that answered resp (a response of Do) in its
// failure cooldown because its body comes too slowly (why says how), so
// that the next request, such as the one continuing a download from its
// last byte, goes to the next endpoint — but only when another endpoint
// is out of its cooldown: it reports whether it demoted the endpoint. A
// slow endpoint is better than none.
func (c *Client) Demote(resp *http.Response, why string) bool {
	body, ok := resp.Body.(*stallBody)
	if !ok || body.ep == nil {
		return false
	}
	now := c.now()
	other := false
	for _, ep := range c.endpoints {
		other = other || ep != body.ep && ep.healthy(now)
	}
	if !other {
		return false
	}
	err := fmt.Errorf("%w: %s", ErrSlow, why)
	body.ep.failed(now, c.opts.FailureCooldown, err)
	// Once per episode, which the endpoint's next success ends.
	body.ep.down.Event(zap.String("upstream", c.cfg.Name), zap.String("endpoint", body.ep.base.String()), zap.Error(err))
	return true
}

// Challenge schemes the client answers.
const (
	schemeBearer = "bearer"
	schemeBasic  = "basic"
)

// pickChallenge prefers a Bearer challenge with a realm, then Basic.
func pickChallenge(chs []Challenge) (Challenge, bool) {
	for _, ch := range chs {
		if ch.Scheme == schemeBearer && ch.Params["realm"] != "" {
			return ch, true
		}
	}
	for _, ch := range chs {
		if ch.Scheme == schemeBasic {
			return ch, true
		}
	}
	return Challenge{}, false
}

// authorization returns the Authorization header for a request to ep, from
// the endpoint's last challenge; refresh forces a new token.
func (c *Client) authorization(ctx context.Context, ep *endpoint, scope string, cred credentials, refresh bool) (string, error) {
	ch, ok := ep.getChallenge()
	if !ok {
		return "", nil
	}
	switch ch.Scheme {
	case schemeBasic:
		if cred.empty() {
			return "", nil
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred.username+":"+cred.password)), nil
	case schemeBearer:
		realm, service := ch.Params["realm"], ch.Params["service"]
		sendCreds := !cred.empty() && c.realmTrusted(ep, realm)
		key := tokenKey{realm: realm, service: service, scope: scope}
		if sendCreds {
			key.cred = cred.id()
		}
		token, err := c.tokens.get(ctx, key, c.now, refresh, func(ctx context.Context) (string, time.Time, error) {
			return c.fetchToken(withHop(ctx, hop{kind: kindToken, endpoint: ep.base.String()}),
				realm, service, scope, cred, sendCreds)
		})
		if err != nil {
			return "", err
		}
		return "Bearer " + token, nil
	}
	return "", nil
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats a URL that
// may be a redirect target with a signed query.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
