package upstream

import (
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/publicsuffix"

	"github.com/regcache/regcache/episode"
)

// endpoint is one base URL of an upstream, with its auth challenge and
// health.
type endpoint struct {
	base *url.URL
	// ns, when set, is sent as the ns query parameter: the endpoint is a
	// mirror of the registry, not the registry itself.
	ns string

	mu          sync.Mutex
	challenge   Challenge
	hasCh       bool
	failedUntil time.Time
	lastErr     string
	lastSuccess time.Time
	skipLogged  bool // the current cooldown's first skip was logged
	// down logs the endpoint's failures once per episode, which its next
	// success ends.
	down *episode.Log
}

// url builds the URL of req on this endpoint.
func (ep *endpoint) url(req Request) *url.URL {
	u := *ep.base
	p := strings.TrimRight(u.Path, "/") + "/v2/"
	if req.Repository != "" {
		p += req.Repository + "/" + req.Path
	}
	u.Path = p
	u.RawPath = ""
	q := req.Query
	if ep.ns != "" {
		q = make(url.Values, len(req.Query)+1)
		for k, vs := range req.Query {
			q[k] = vs
		}
		q.Set("ns", ep.ns)
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return &u
}

// getChallenge returns the endpoint's last challenge, if any.
func (ep *endpoint) getChallenge() (Challenge, bool) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.challenge, ep.hasCh
}

// setChallenge remembers the endpoint's last challenge.
func (ep *endpoint) setChallenge(ch Challenge) {
	ep.mu.Lock()
	ep.challenge, ep.hasCh = ch, true
	ep.mu.Unlock()
}

// succeeded records an answer of the endpoint and clears its failure.
func (ep *endpoint) succeeded(now time.Time) {
	ep.mu.Lock()
	ep.failedUntil, ep.lastErr, ep.lastSuccess = time.Time{}, "", now
	ep.mu.Unlock()
}

// failed puts the endpoint in cooldown after err.
func (ep *endpoint) failed(now time.Time, cooldown time.Duration, err error) {
	ep.mu.Lock()
	ep.failedUntil, ep.lastErr, ep.skipLogged = now.Add(cooldown), err.Error(), false
	ep.mu.Unlock()
}

// noteSkip records that a request skipped the endpoint. It returns the
// failure that started the cooldown, its end, and whether this is the first
// skip of the cooldown.
func (ep *endpoint) noteSkip() (lastErr string, until time.Time, first bool) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	first = !ep.skipLogged
	ep.skipLogged = true
	return ep.lastErr, ep.failedUntil, first
}

// healthy reports whether the endpoint is out of its cooldown.
func (ep *endpoint) healthy(now time.Time) bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return !now.Before(ep.failedUntil)
}

// order returns the endpoints to try: the healthy ones in order, or every
// one when none is healthy (never fail without trying). The first skip of
// an endpoint in each of its cooldowns is logged at Warn; later skips in the
// same cooldown are not, so that a dead endpoint does not flood the log.
func (c *Client) order() []*endpoint {
	now := c.now()
	var out, skipped []*endpoint
	for _, ep := range c.endpoints {
		if ep.healthy(now) {
			out = append(out, ep)
		} else {
			skipped = append(skipped, ep)
		}
	}
	if len(out) == 0 {
		return c.endpoints
	}
	for _, ep := range skipped {
		if lastErr, until, first := ep.noteSkip(); first {
			c.log.Warn("skipping upstream endpoint in cooldown", zap.String("upstream", c.cfg.Name),
				zap.String("endpoint", ep.base.String()), zap.String("error", lastErr), zap.Time("until", until))
		}
	}
	return out
}

// EndpointHealth reports one endpoint's state.
type EndpointHealth struct {
	// URL is the endpoint's base URL.
	URL string
	// Healthy is false while the endpoint is in its failure cooldown.
	Healthy bool
	// LastError is the text of the failure that started the cooldown; empty
	// after a success.
	LastError string
	// FailedUntil is the end of the cooldown; zero when none.
	FailedUntil time.Time
	// LastSuccess is when the endpoint last answered; zero when never.
	LastSuccess time.Time
}

// Health reports every endpoint's state, in order.
func (c *Client) Health() []EndpointHealth {
	now := c.now()
	out := make([]EndpointHealth, 0, len(c.endpoints))
	for _, ep := range c.endpoints {
		ep.mu.Lock()
		out = append(out, EndpointHealth{
			URL: ep.base.String(), Healthy: !now.Before(ep.failedUntil), LastError: ep.lastErr,
			FailedUntil: ep.failedUntil, LastSuccess: ep.lastSuccess,
		})
		ep.mu.Unlock()
	}
	return out
}

// realmTrusted reports whether credentials may be sent to a token realm:
// over https (or http when the endpoint itself is http), to the endpoint's
// own host, a host of its registrable domain, or a configured host. An IP
// or single-label host is trusted only when it is the endpoint's own.
func (c *Client) realmTrusted(ep *endpoint, realm string) bool {
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && ep.base.Scheme == "http") {
		return false
	}
	realmHost, epHost := strings.ToLower(u.Hostname()), strings.ToLower(ep.base.Hostname())
	if realmHost == epHost {
		return true
	}
	for _, h := range c.cfg.TrustedRealmHosts {
		if strings.EqualFold(h, realmHost) {
			return true
		}
	}
	if net.ParseIP(realmHost) != nil || net.ParseIP(epHost) != nil || !strings.Contains(epHost, ".") {
		return false
	}
	a, err1 := publicsuffix.EffectiveTLDPlusOne(realmHost)
	b, err2 := publicsuffix.EffectiveTLDPlusOne(epHost)
	return err1 == nil && err2 == nil && a == b
}
