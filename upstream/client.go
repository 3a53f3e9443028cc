package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config describes one upstream registry.
type Config struct {
	// Name is the registry's name as clients know it ("docker.io"); used in
	// logs and errors.
	Name string
	// Endpoints are base URLs of the registry API, tried in order.
	Endpoints []string
	// Username and Password authenticate to the token realm (Bearer) or
	// the registry itself (Basic). Optional.
	Username string
	Password string
	// TrustedRealmHosts are further host names (no port) that may receive
	// the credentials as a token realm, besides the endpoint's own host and
	// hosts of its registrable domain.
	TrustedRealmHosts []string
}

// Options tune a Client; zero values mean defaults.
type Options struct {
	// Logger receives the client's logs. Default: a no-op logger.
	Logger *zap.Logger
	// Transport is the base transport. Default: a clone of
	// http.DefaultTransport that never decompresses bodies.
	Transport http.RoundTripper
	// DialTimeout bounds connecting. Default: 10s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers.
	// Default: 30s.
	ResponseHeaderTimeout time.Duration
	// StallTimeout fails a response body that delivers no byte for this
	// long. Default: 30s.
	StallTimeout time.Duration
	// FailureCooldown is how long a failed endpoint is skipped. Default: 30s.
	FailureCooldown time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// OnResponse, when set, is called once per HTTP exchange.
	OnResponse func(Exchange)
}

// Exchange describes one HTTP exchange with an upstream host.
type Exchange struct {
	Upstream string
	Endpoint string
	Method   string
	// Kind is "registry", "token" or "redirect".
	Kind     string
	Status   int
	Duration time.Duration
	Err      error
}

// Client is a client of one upstream registry, safe for concurrent use.
type Client struct {
	cfg          Config
	log          *zap.Logger
	http         *http.Client
	endpoints    []*endpoint
	tokens       tokenCache
	stallTimeout time.Duration
	cooldown     time.Duration
	now          func() time.Time
	onResponse   func(Exchange)

	rlMu sync.Mutex
	rl   RateLimit
	rlOK bool
}

// New returns a client for cfg.
func New(cfg Config, opts Options) (*Client, error) {
	if cfg.Name == "" {
		return nil, errors.New("upstream: a name is required")
	}
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("upstream %s: no endpoint", cfg.Name)
	}
	c := &Client{
		cfg:          cfg,
		log:          opts.Logger,
		stallTimeout: opts.StallTimeout,
		cooldown:     opts.FailureCooldown,
		now:          opts.Now,
		onResponse:   opts.OnResponse,
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if c.stallTimeout <= 0 {
		c.stallTimeout = 30 * time.Second
	}
	if c.cooldown <= 0 {
		c.cooldown = 30 * time.Second
	}
	if c.now == nil {
		c.now = time.Now
	}
	for _, raw := range cfg.Endpoints {
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("upstream %s: endpoint %q must be an http(s) URL without query", cfg.Name, raw)
		}
		c.endpoints = append(c.endpoints, &endpoint{base: u})
	}
	base := opts.Transport
	if base == nil {
		dial := opts.DialTimeout
		if dial <= 0 {
			dial = 10 * time.Second
		}
		rht := opts.ResponseHeaderTimeout
		if rht <= 0 {
			rht = 30 * time.Second
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext
		t.DisableCompression = true // bytes must stay exactly as the upstream sent them
		t.ForceAttemptHTTP2 = true
		t.MaxIdleConnsPerHost = 64
		t.TLSHandshakeTimeout = 10 * time.Second
		t.ResponseHeaderTimeout = rht
		t.IdleConnTimeout = 90 * time.Second
		base = t
	}
	c.http = &http.Client{
		Transport:     &authTransport{base: base, client: c},
		CheckRedirect: checkRedirect,
	}
	return c, nil
}

// Name returns the registry's name.
func (c *Client) Name() string { return c.cfg.Name }

// Request is one read request to the registry API.
type Request struct {
	// Method is GET or HEAD.
	Method string
	// Repository is the repository at the upstream ("library/alpine");
	// empty with an empty Path for "/v2/".
	Repository string
	// Path follows "/v2/<repository>/": "manifests/latest",
	// "blobs/sha256:…", "tags/list", "referrers/sha256:…".
	Path string
	// Query is added to the URL (pagination, filters).
	Query url.Values
	// Header is forwarded (Accept, Range…); Authorization is not.
	Header http.Header
}

// credentialsFor returns the request's credentials: the client's own from
// ctx, else the configured ones.
func (c *Client) credentialsFor(ctx context.Context) credentials {
	if cred, ok := ctx.Value(credentialsKey{}).(credentials); ok {
		return cred
	}
	return credentials{c.cfg.Username, c.cfg.Password}
}

// Do performs req against the first usable endpoint, authenticating and
// following redirects. It returns the response when the final status is
// 2xx or 304; any other answer is an *Error. Transport failures of every
// endpoint are ErrUnavailable.
func (c *Client) Do(ctx context.Context, req Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return nil, fmt.Errorf("upstream %s: method %s is not supported", c.cfg.Name, req.Method)
	}
	var lastErr error
	for _, ep := range c.order() {
		resp, err := c.doEndpoint(ctx, ep, req)
		if err == nil {
			ep.succeeded(c.now())
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upstream %s: %w", c.cfg.Name, ctx.Err())
		}
		var ue *Error
		if errors.As(err, &ue) && ue.Status < 500 && ue.Status != http.StatusTooManyRequests {
			ep.succeeded(c.now())
			return nil, err
		}
		ep.failed(c.now(), c.cooldown, err)
		c.log.Warn("upstream endpoint failed", zap.String("upstream", c.cfg.Name),
			zap.String("endpoint", ep.base.String()), zap.Error(err))
		lastErr = err
	}
	var ue *Error
	if errors.As(lastErr, &ue) {
		return nil, lastErr
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, c.cfg.Name, lastErr)
}

// doEndpoint performs req against one endpoint, with at most one retry
// after a 401 with a (new) challenge.
func (c *Client) doEndpoint(ctx context.Context, ep *endpoint, req Request) (*http.Response, error) {
	target := ep.url(req)
	scope := ""
	if req.Repository != "" {
		scope = "repository:" + req.Repository + ":pull"
	}
	cred := c.credentialsFor(ctx)
	for attempt := 0; ; attempt++ {
		auth, err := c.authorization(ctx, ep, scope, cred, attempt > 0)
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithCancel(ctx)
		rctx = withAuth(withKind(rctx, "registry"), authInfo{scheme: ep.base.Scheme, host: ep.base.Host, header: auth, endpoint: ep.base.String()})
		hreq, err := http.NewRequestWithContext(rctx, req.Method, target, nil)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("upstream %s: building request: %w", c.cfg.Name, err)
		}
		for k, vs := range req.Header {
			if !strings.EqualFold(k, "Authorization") {
				hreq.Header[k] = vs
			}
		}
		if ce := c.log.Check(zapcore.DebugLevel, "upstream request"); ce != nil {
			ce.Write(zap.String("upstream", c.cfg.Name), zap.String("method", req.Method),
				zap.String("repository", req.Repository), zap.String("path", req.Path))
		}
		resp, err := c.http.Do(hreq)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("upstream %s: %s %s: %w", c.cfg.Name, req.Method, redact(target), unwrapURLError(err))
		}
		c.noteRateLimit(resp.Header)
		switch {
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			chs := ParseChallenges(strings.Join(resp.Header.Values("Www-Authenticate"), ", "))
			e := errorFromResponse(c.cfg.Name, resp)
			cancel()
			ch, ok := pickChallenge(chs)
			if !ok || (ch.Scheme == "basic" && cred.empty()) {
				return nil, e
			}
			ep.setChallenge(ch)
			if s := ch.Params["scope"]; s != "" && ch.Scheme == "bearer" {
				scope = s
			}
			continue
		case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode == http.StatusNotModified:
			resp.Body = newStallBody(resp.Body, c.stallTimeout, cancel)
			return resp, nil
		default:
			e := errorFromResponse(c.cfg.Name, resp)
			cancel()
			return nil, e
		}
	}
}

// pickChallenge prefers a Bearer challenge with a realm, then Basic.
func pickChallenge(chs []Challenge) (Challenge, bool) {
	for _, ch := range chs {
		if ch.Scheme == "bearer" && ch.Params["realm"] != "" {
			return ch, true
		}
	}
	for _, ch := range chs {
		if ch.Scheme == "basic" {
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
	case "basic":
		if cred.empty() {
			return "", nil
		}
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(cred.username, cred.password)
		return r.Header.Get("Authorization"), nil
	case "bearer":
		realm, service := ch.Params["realm"], ch.Params["service"]
		sendCreds := c.realmTrusted(ep, realm)
		key := tokenKey{realm: realm, service: service, scope: scope}
		if sendCreds {
			key.cred = cred.id()
		}
		token, err := c.tokens.get(ctx, key, c.now(), refresh, func(ctx context.Context) (string, time.Time, error) {
			return c.fetchToken(ctx, realm, service, scope, cred, sendCreds)
		})
		if err != nil {
			return "", err
		}
		return "Bearer " + token, nil
	}
	return "", nil
}

// RateLimit returns the pull budget last reported by the upstream.
func (c *Client) RateLimit() (RateLimit, bool) {
	c.rlMu.Lock()
	defer c.rlMu.Unlock()
	return c.rl, c.rlOK
}

// noteRateLimit records the budget of a response, if it reports one.
func (c *Client) noteRateLimit(h http.Header) {
	rl, ok := ParseRateLimit(h)
	if !ok {
		return
	}
	rl.Seen = c.now()
	c.rlMu.Lock()
	c.rl, c.rlOK = rl, true
	c.rlMu.Unlock()
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact returns a URL without its query and user info, for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
