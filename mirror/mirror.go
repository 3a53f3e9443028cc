package mirror

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/episode"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// MaxManifestSize is the largest manifest regcache accepts from an upstream,
// the same limit as the distribution registry's.
const MaxManifestSize = 4 << 20

// DefaultTagTTL is how long a tag's digest is trusted without revalidation
// when Config.TagTTL is zero.
const DefaultTagTTL = 5 * time.Minute

// Config configures a Mirror.
type Config struct {
	// Upstreams are the registries this mirror serves, by their Name().
	// Only these are reachable.
	Upstreams []*upstream.Client
	// Default names the upstream for requests that name none (by ns
	// parameter or path prefix). Default: docker.io when configured, else
	// the first upstream.
	Default string
	// Store is the content store. Required.
	Store Content
	// Records holds the tag records, links and grants. Required.
	Records Records
	// Peers are the nodes sharing the cache: a HEAD of a blob they hold
	// is answered from it, and the manifest fetches run once among them.
	// Default: none.
	Peers Peers
	// TagTTL is how long a tag -> digest answer is trusted before it is
	// revalidated with a HEAD. Default: DefaultTagTTL.
	TagTTL time.Duration
	// StaleIfError bounds how long past its TTL a tag may still be served
	// from cache when its revalidation fails (upstream unreachable, timing
	// out, 5xx or 429). Zero means no limit.
	StaleIfError time.Duration
	// NegativeTTL is how long an upstream's 404 for a manifest, by tag or
	// by digest, is remembered and answered without asking the upstream
	// again. Zero means DefaultNegativeTTL; negative disables it.
	NegativeTTL time.Duration
	// AccessTTL is how long an upstream's decision to let an identity (a
	// client's own credentials, the configured ones, or anonymous) pull a
	// repository, or not, is trusted before cached content of that
	// repository is served to it again only after a HEAD. Default:
	// DefaultAccessTTL.
	AccessTTL time.Duration
	// IgnoreClientCredentials turns the mirror's token endpoint off: the
	// API root answers 200 without a challenge, clients' Authorization
	// headers are ignored and every client pulls with the configured
	// credentials (or anonymously). Default: false, clients may log in.
	IgnoreClientCredentials bool
	// TokenRealm is the URL of the mirror's token endpoint as clients
	// reach it, for a mirror behind a proxy that changes the scheme or
	// host. Default: the request's scheme and host with TokenPath.
	TokenRealm string
	// MaxUpstreamRequests bounds the upstream requests for manifests,
	// access checks, tag lists and referrers that run at once; more wait
	// for a slot, up to 30s, then get 503 with a Retry-After. Blob
	// downloads are bounded by the cache's fill slots instead. Default:
	// DefaultMaxUpstreamRequests.
	MaxUpstreamRequests int
	// Policy is the edge policy: allow and deny rules, blocked digests and
	// signature rules, applied to every request. Default: nil, everything
	// the upstream serves is served.
	Policy *access.Policy
	// LoginLimits bound the credential checks asked of upstreams per
	// client address and overall. Default: see LoginLimits.
	LoginLimits LoginLimits
	// ClientAddress returns the address a request's client is limited
	// under (LoginLimits), as the server resolved it (behind trusted
	// proxies, the client's own). Default: the host of r.RemoteAddr.
	ClientAddress func(r *http.Request) string
	// DisablePrefetch turns prefetch off: by default, when the mirror
	// fetches an image manifest from the upstream for a client, it starts
	// the fills of the image's config and layers with that client's
	// credentials, within the cache's download slots and below the fills
	// clients wait for (see Content.Prefetch).
	DisablePrefetch bool
	// Logger receives the mirror's logs. Default: a no-op logger.
	Logger *zap.Logger
	// Audit receives one Info line per image pull (see auditPull).
	// Default: none.
	Audit *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// WithDefaults returns c with the default of every field left zero
// filled in: the values New runs with. TagTTL and MaxUpstreamRequests take
// theirs when zero or less, NegativeTTL when zero (negative disables it);
// AccessTTL takes the access package's (see access.DecisionsConfig), and
// LoginLimits theirs (see LoginLimits). StaleIfError, Default, Policy and
// Audit have none: zero means no limit, the upstreams' default (see
// DefaultRegistry), no policy, no audit log.
func (c Config) WithDefaults() Config {
	if c.Peers == nil {
		c.Peers = noPeers{}
	}
	if c.TagTTL <= 0 {
		c.TagTTL = DefaultTagTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	c.AccessTTL = access.DecisionsConfig{TTL: c.AccessTTL}.WithDefaults().TTL
	if c.MaxUpstreamRequests <= 0 {
		c.MaxUpstreamRequests = DefaultMaxUpstreamRequests
	}
	c.LoginLimits = c.LoginLimits.withDefaults()
	if c.ClientAddress == nil {
		c.ClientAddress = func(r *http.Request) string { return r.RemoteAddr }
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Mirror is the pull-through cache as an http.Handler for /v2/ requests.
type Mirror struct {
	// cfg is the configuration, with its defaults. The store, records,
	// peers, logger and clock, which nearly every request uses, are also
	// fields of their own.
	cfg         Config
	upstreams   map[string]*upstream.Client
	defaultName string
	store       Content
	records     Records
	peers       Peers
	log         *zap.Logger
	now         func() time.Time

	auditedHeads recentHeads // the HEADs by tag of pulls, for the audit log

	tagFlight      access.Flight[tagKey, resolvedTag]
	manifestFlight access.Flight[manifestKey, manifestContent]
	negative       *negativeCache // nil: disabled
	stats          statCounters

	decisions     *access.Decisions
	clientTokens  *clientTokens
	upstreamSlots *limiter
	verdicts      access.Flight[verdictKey, access.Verdict]
	loginLimit    *loginLimiter // nil: off

	// Lasting conditions, logged once per episode with a count (see
	// package episode), not once per request.
	staleLog, failLog, abortLog, credCheckLog, throttleLog *episode.Log
}

// New returns a Mirror for cfg.
func New(cfg Config) (*Mirror, error) {
	if cfg.Store == nil {
		return nil, errors.New("mirror: a cache store is required")
	}
	if cfg.Records == nil {
		return nil, errors.New("mirror: a record store is required")
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("mirror: at least one upstream is required")
	}
	cfg = cfg.WithDefaults()
	m := &Mirror{
		cfg:       cfg,
		upstreams: make(map[string]*upstream.Client, len(cfg.Upstreams)),
		store:     cfg.Store,
		records:   cfg.Records,
		peers:     cfg.Peers,
		log:       cfg.Logger,
		now:       cfg.Now,
	}
	m.clientTokens = newClientTokens()
	m.upstreamSlots = newLimiter(cfg.MaxUpstreamRequests, upstreamQueueTimeout)
	for _, c := range cfg.Upstreams {
		name := CanonicalRegistry(c.Name())
		if _, dup := m.upstreams[name]; dup {
			return nil, fmt.Errorf("mirror: upstream %q configured twice", name)
		}
		m.upstreams[name] = c
	}
	names := make([]string, 0, len(cfg.Upstreams))
	for _, c := range cfg.Upstreams {
		names = append(names, c.Name())
	}
	m.defaultName = DefaultRegistry(cfg.Default, names)
	if _, ok := m.upstreams[m.defaultName]; !ok {
		return nil, fmt.Errorf("mirror: default upstream %q is not configured", m.defaultName)
	}
	m.negative = newNegativeCache(cfg.NegativeTTL, maxNegativeEntries)
	m.decisions = access.NewDecisions(access.DecisionsConfig{
		Records: accessRecords{m.records}, TTL: cfg.AccessTTL, StaleLimit: cfg.StaleIfError,
		Refused: refused, Failed: checkFailed, Now: m.now, Log: m.log,
	})
	m.loginLimit = newLoginLimiter(cfg.LoginLimits, m.now())
	eo := episode.Options{Now: m.now}
	m.staleLog = episode.New(m.log, zapcore.WarnLevel, "serving stale tags: the upstream failed to revalidate them", eo)
	m.failLog = episode.New(m.log, zapcore.WarnLevel, "requests failed", eo)
	m.abortLog = episode.New(m.log, zapcore.WarnLevel, "aborting blob responses: their fill failed", eo)
	m.throttleLog = episode.New(m.log, zapcore.WarnLevel, "refusing credential checks: too many from a client or in all", eo)
	m.credCheckLog = episode.New(m.log, zapcore.WarnLevel, "could not check client credentials with the upstream; taking them as given", eo)
	return m, nil
}

// ServeHTTP answers one registry API request under /v2/.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(oci.APIVersionHeader, oci.APIVersion)
	if r.URL.Path == TokenPath {
		m.serveToken(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		m.writeError(w, r, oci.Errorf(http.StatusMethodNotAllowed, oci.CodeUnsupported,
			"%s is not supported: this registry is a read-only pull-through cache", r.Method))
		return
	}
	route, err := oci.ParseRoute(r.URL.EscapedPath())
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	switch route.Kind {
	case oci.KindBase:
		m.serveBaseAuth(w, r)
		return
	case oci.KindUpload:
		m.writeError(w, r, oci.Errorf(http.StatusMethodNotAllowed, oci.CodeUnsupported,
			"uploads are not supported: this registry is a read-only pull-through cache"))
		return
	case oci.KindCatalog:
		m.serveCatalog(w, r)
		return
	}
	// Every named request is counted by kind and result; a response
	// aborted midway (a bad upstream body) counts as an error.
	cw := &countingWriter{ResponseWriter: w}
	w = cw
	completed := false
	start := m.now()
	var (
		target target
		cl     client
	)
	defer func() {
		failed := !completed || cw.status >= 400
		m.stats.requests.count(route.Kind, cw.source, failed, cw.n)
		if completed {
			m.auditPull(r, route, target, cl, cw)
		}
		// One line per request, at Debug: a busy office makes many.
		if ce := m.log.Check(zapcore.DebugLevel, "request"); ce != nil {
			ce.Write(zap.String("method", r.Method), zap.String("kind", route.Kind.String()),
				zap.String("upstream", target.registry), zap.String("repository", target.repo),
				zap.String("reference", route.Reference), zap.String("result", resultName(cw.source, failed)),
				zap.Int("status", cw.status), zap.Int64("bytes", cw.n), zap.Duration("duration", m.now().Sub(start)))
		}
	}()
	cl, err = m.clientOf(r)
	if err == nil {
		target, err = m.resolve(r, route.Name)
	}
	if err != nil {
		m.writeError(w, r, err)
		completed = true
		return
	}
	target = target.forClient(cl)
	if err = m.checkPolicy(target, route.Kind, route.Reference); err != nil {
		m.writeRouteError(w, r, route, target, err)
		completed = true
		return
	}
	switch route.Kind {
	case oci.KindManifest:
		err = m.serveManifest(w, r, target, route.Reference)
	case oci.KindBlob:
		err = m.serveBlob(w, r, target, route.Reference)
	case oci.KindTags:
		err = m.serveTags(w, r, target)
	case oci.KindReferrers:
		err = m.serveReferrers(w, r, target, route.Reference)
	default:
		err = oci.Errorf(http.StatusNotFound, oci.CodeUnsupported, "no such registry API endpoint")
	}
	if err != nil {
		m.writeRouteError(w, r, route, target, err)
	}
	completed = true
}

// serveBase answers the API version check.
func (m *Mirror) serveBase(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("{}"))
	}
}
