package caddymodule

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/s3tier"
	"github.com/regcache/regcache/schedule"
	"github.com/regcache/regcache/upstream"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("registry_cache", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("registry_cache", httpcaddyfile.Before, "reverse_proxy")
}

// Defaults of the Handler's fields, as the packages that own them define
// them.
const (
	// DefaultMaxSize is the disk budget when max_size is not set.
	DefaultMaxSize = cache.DefaultMaxBytes
	// DefaultMemory is the hot index budget when memory is not set.
	DefaultMemory int64 = cache.DefaultMemoryBytes
	// DefaultTagTTL is how long a tag is trusted when tag_ttl is not set.
	DefaultTagTTL = mirror.DefaultTagTTL
	// DefaultNegativeTTL is how long an upstream's 404 for a manifest is
	// remembered when negative_ttl is not set.
	DefaultNegativeTTL = mirror.DefaultNegativeTTL
)

// Handler turns a Caddy site into a pull-through cache of container
// registries. It answers every request under /v2/ (the registry API) and
// passes any other request to the next handler.
//
// Blobs and manifests are cached by digest on disk, with a hot index in
// memory; tags are trusted for TagTTL, then revalidated with a HEAD. With
// no upstream configured, it mirrors Docker Hub and the well-known public
// registries (ghcr.io, quay.io, registry.k8s.io, gcr.io,
// mcr.microsoft.com, public.ecr.aws, nvcr.io).
type Handler struct {
	// Storage is the cache directory. Default: "registry_cache" under
	// Caddy's data directory. Two handlers naming the same directory share
	// one open cache.
	Storage string `json:"storage,omitempty"`

	// S3 shares the cache among several nodes through a bucket of an
	// S3-compatible object store, behind the storage directory (which
	// stays each node's own tier). Default: none, the cache is this
	// node's alone.
	S3 *S3Storage `json:"s3,omitempty"`

	// MaxSize is the disk budget of the cache in bytes. Default: 10 GiB.
	// Beyond it the least recently used objects that no client is reading
	// are evicted (blobs before the manifests that name them), down to 95%
	// of the budget; a blob larger than the budget is served without being
	// stored. The hot index and metadata are not counted.
	MaxSize int64 `json:"max_size,omitempty"`

	// MaxIdle evicts the manifests and blobs no client read for this long,
	// and the tags whose manifest that removes, alongside max_size (which
	// still evicts the least recently used first when the disk budget is
	// reached). Content a sync rule keeps stays. Checked every hundredth
	// of it (at least every minute, at most every hour). The Caddyfile
	// accepts days: 30d. Default: 0, content is evicted only for max_size.
	MaxIdle caddy.Duration `json:"max_idle,omitempty"`

	// Sync keeps images in the cache before any client asks for them, on
	// a schedule; see SyncRule. Default: none.
	Sync []SyncRule `json:"sync,omitempty"`

	// Memory is the budget of the in-memory hot index in bytes, which holds
	// manifests and blob metadata. It applies when the cache directory is
	// first opened: a reload that changes it logs, at Warn, that the open
	// cache keeps its running value. Default: 64 MiB.
	Memory int64 `json:"memory,omitempty"`

	// TagTTL is how long a tag -> digest answer is trusted before it is
	// revalidated with the upstream (with a HEAD, which Docker Hub does not
	// count against its pull limit). Default: 5m.
	TagTTL caddy.Duration `json:"tag_ttl,omitempty"`

	// StaleIfError is how long past its tag_ttl a tag may still be served
	// from the cache when the upstream cannot revalidate it (unreachable,
	// timing out, answering 5xx or 429). Each such answer is logged at
	// Warn. Default: 0, no limit: cached images keep working through an
	// outage of any length.
	StaleIfError caddy.Duration `json:"stale_if_error,omitempty"`

	// NegativeTTL is how long an upstream's "not found" answer for a
	// manifest (404 with MANIFEST_UNKNOWN, NAME_UNKNOWN or no body), by tag
	// or by digest, is remembered and answered from memory, so that a
	// missing image does not hammer the upstream. It is remembered per
	// upstream, repository, reference and upstream credential; 401, 403,
	// 429 and 5xx answers never are. Once it passes, the next request asks
	// the upstream again, so an image pushed meanwhile is served. At most
	// 10,000 answers are kept, the oldest dropped first. A negative value
	// (-1; "off" in the Caddyfile) disables it. Default: 30s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// RateLimitReserve is the part of an upstream's pull budget, as its
	// ratelimit-remaining header reports it (Docker Hub), that is never
	// spent. While the last report is at or below it, manifest GETs (what
	// Docker Hub counts) are not sent: a stale tag is served from the cache
	// instead (within stale_if_error), and a request nothing cached can
	// answer gets 429 TOOMANYREQUESTS with a Retry-After. HEADs, which
	// Docker Hub does not count, still revalidate tags, and the first
	// report of budget above the reserve resumes GETs; without one, a HEAD
	// probes the budget a minute later (or after the Retry-After of a 429,
	// which holds GETs back too). The first held-back request of each
	// exhaustion is logged at Warn. Default: 0, GETs stop only once the
	// budget is spent.
	RateLimitReserve int `json:"rate_limit_reserve,omitempty"`

	// ConnectTimeout bounds connecting to an upstream endpoint; a failed
	// endpoint is skipped for a while in favour of the next. Default: 10s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`

	// ResponseTimeout bounds the wait for an upstream's response headers;
	// when it passes, a stale tag is served (see stale_if_error), or the
	// client gets 504. Default: 30s.
	ResponseTimeout caddy.Duration `json:"response_timeout,omitempty"`

	// StallTimeout fails an upstream body that sends no byte for this long:
	// the download is dropped, never stored, and its clients' responses are
	// aborted. A slow body that keeps moving never times out. Default: 30s.
	StallTimeout caddy.Duration `json:"stall_timeout,omitempty"`

	// AccessTTL is how long an upstream's decision to let a client pull a
	// repository, or not, is trusted. Cached content of a repository is
	// served to a client only while the upstream lets that client (by its
	// own credentials, else the upstream's configured ones, else
	// anonymously) pull the repository; once the decision is older than
	// this, the next request for cached content checks it with a HEAD
	// (which Docker Hub does not count against its pull limit). While the
	// upstream cannot answer, the last decision stands. Default: 5m.
	AccessTTL caddy.Duration `json:"access_ttl,omitempty"`

	// DisableClientLogin turns off the mirror's own token endpoint
	// (/v2/_token): the API root answers 200 without a challenge, and
	// clients' Authorization headers are ignored, so every client pulls
	// with the upstream's configured credentials or anonymously. By
	// default, a client may log in to the mirror (docker login, an auths
	// entry, containerd host credentials) with its credentials for the
	// upstream registry, which the mirror then uses for that client's
	// requests only, and for no other registry. A site that authenticates
	// its clients itself (basic_auth) keeps their Authorization header to
	// itself either way. Default: false.
	DisableClientLogin bool `json:"disable_client_login,omitempty"`

	// TokenRealm is the URL at which clients reach the mirror's token
	// endpoint, for a mirror behind a proxy that changes the scheme or the
	// host ("https://mirror.example.com/v2/_token"). Default: the scheme
	// and host of each request, with the path /v2/_token.
	TokenRealm string `json:"token_realm,omitempty"`

	// LoginLimit bounds the credential checks of clients logging in to
	// the mirror, per client address and overall (see LoginLimit).
	// Default: 10 refused checks per client address, then 6 a minute; 100
	// for all clients, then 60 a minute.
	LoginLimit *LoginLimit `json:"login_limit,omitempty"`

	// AllowedNetworks are internal networks (CIDR prefixes or addresses)
	// that an upstream's redirects and token realms may lead the mirror
	// to. The mirror never connects to a loopback (127.0.0.0/8, ::1),
	// link-local (169.254.0.0/16, fe80::/10), private (10.0.0.0/8,
	// 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7) or
	// unspecified (0.0.0.0/8, ::) address because an upstream redirected
	// it there or named a token realm there, unless an endpoint of that
	// upstream is itself in that class of network (a registry on the
	// office network, a test registry on loopback) or the address is in
	// one of these networks. IPv6 addresses carrying an IPv4 address
	// (NAT64 64:ff9b::/96, 6to4 2002::/16) are classed by it. An
	// endpoint's class comes from the configuration: its IP address,
	// localhost, or its name as resolved once when the config is loaded;
	// later DNS answers never widen it. The check applies to the resolved
	// address of each connection, so a changed DNS answer cannot bypass
	// it; a refusal is logged at Warn once per episode, counted in the
	// metric caddy_registry_cache_internal_refusals_total, and answered
	// 502. Behind an HTTP proxy (HTTPS_PROXY), which resolves names itself,
	// a target's name is resolved by the mirror too and refused when any
	// answer is internal; a name the mirror cannot resolve is left to the
	// proxy. Default: none.
	AllowedNetworks []string `json:"allowed_networks,omitempty"`

	// MaxDownloads bounds the blob downloads from upstreams into the cache
	// that run at once, and with them the file descriptors, disk space in
	// flight and upstream connections that a flood of distinct cold
	// requests can take. A download beyond it waits up to a minute for a
	// slot, then its client gets 503 with a Retry-After; clients of a blob
	// already downloading join it without a slot. It applies when the cache
	// directory is first opened (a reload that changes it says so at Warn,
	// as for every such setting). Default: 64.
	MaxDownloads int `json:"max_downloads,omitempty"`

	// FillRetries is how many attempts in a row a blob download makes
	// without getting further after its transfer broke (a reset, a stall,
	// a cut, an expired signed URL) before it gives up. Each attempt
	// continues from the last byte received with a Range request (through
	// the registry again, so tokens and redirects are renewed); an attempt
	// that got further than any before does not count, and the pause
	// between attempts doubles from 500ms up to 30s. It applies when the
	// cache directory is first opened. Default: 5.
	FillRetries int `json:"fill_retries,omitempty"`

	// FillConnections is how many connections a download of a large blob
	// (at least fill_split_size) uses at once: the blob is cut into as
	// many ranges, each fetched over its own connection and written at its
	// offset, while clients stream the verified prefix as it grows. On a
	// link that caps each connection this multiplies the speed of a first
	// pull. An upstream that does not answer ranges is read in one stream.
	// 1 turns it off. It applies when the cache directory is first opened.
	// Default: 4.
	FillConnections int `json:"fill_connections,omitempty"`

	// FillSplitSize is the size in bytes from which a blob download uses
	// fill_connections. It applies when the cache directory is first
	// opened. Default: 32 MiB.
	FillSplitSize int64 `json:"fill_split_size,omitempty"`

	// SlowSourceRate is the rate, in bytes per second over the last
	// second, under which a blob download counts as slow when it has
	// another source to try (another endpoint of the upstream not in its
	// failure cooldown, or the upstream of another client waiting for the
	// same blob) that it has not tried yet: the download then continues
	// from that source at the byte it reached. Whatever this rate, a
	// download is also slow under a quarter of the best rate any of its
	// sources showed, and a range of a download split over
	// fill_connections under a quarter of its fastest sibling's rate (that
	// range is then fetched again from where it stopped, over a new
	// connection or from another source). A download is first judged after
	// a full second, turns away from slow sources at most a few times, and
	// such a switch never counts against fill_retries. Not applied with a
	// shared bucket (storage s3), whose downloads are judged by failures
	// and silence only. It applies when the cache directory is first
	// opened. Default: 2 MiB/s (about a 16 Mbit/s line).
	SlowSourceRate int64 `json:"slow_source_rate,omitempty"`

	// DisablePrefetch turns prefetch off. By default, when the mirror
	// fetches an image manifest (not an index) from an upstream for a
	// client, it starts the downloads of the image's config and layers
	// right away, with that client's credentials, so the blobs the client
	// asks for next are already on their way. Prefetch takes a download
	// slot (max_downloads) only while more than a quarter of them stay
	// free for the downloads clients wait for, and never fetches a
	// manifest (on Docker Hub blob GETs do not count against the pull
	// limit, manifest GETs do). Its cost: the layers of an image whose
	// manifest a client fetched but whose layers it never pulls (a client
	// that already has them, or only inspects the image) are downloaded
	// and stored anyway. Default: false (prefetch on).
	DisablePrefetch bool `json:"disable_prefetch,omitempty"`

	// IngestMaxSize bounds, in bytes, the partial downloads kept in the
	// cache directory's ingest/ area: a download that gave up, or was
	// stopped by a restart, is kept so that the next request for its blob
	// continues it instead of starting over; beyond this size the oldest
	// are removed. It applies when the cache directory is first opened.
	// Default: 4 GiB.
	IngestMaxSize int64 `json:"ingest_max_size,omitempty"`

	// IngestMaxAge is how long a partial download is kept for a later
	// request to continue. It applies when the cache directory is first
	// opened. Default: 24h.
	IngestMaxAge caddy.Duration `json:"ingest_max_age,omitempty"`

	// MaxUpstreamRequests bounds the other upstream requests that run at
	// once: manifests (at most 4 MiB each in memory), access checks, tag
	// lists and referrers. More wait up to 30s for a slot, then get 503
	// with a Retry-After. Default: 64.
	MaxUpstreamRequests int `json:"max_upstream_requests,omitempty"`

	// ScrubInterval is how often a background pass hashes every cached
	// blob and manifest against its digest, at no more than scrub_rate: a
	// corrupt object (bit rot, a damaged disk) is removed, logged at Error
	// and counted (caddy_registry_cache_corrupt_objects_total), and the
	// next request fetches it again. A pass interrupted by a restart
	// resumes where it stopped; the first pass of a cache never scrubbed
	// starts an hour after the start (or one interval, if shorter). It
	// applies when the cache directory is first opened. A negative value
	// (-1; "off" in the Caddyfile) turns the scrub off. Default: 168h (7
	// days).
	ScrubInterval caddy.Duration `json:"scrub_interval,omitempty"`

	// ScrubRate bounds the reads of the background scrub in bytes per
	// second, so that it does not disturb serving. It applies when the
	// cache directory is first opened. Default: 50 MiB/s (a 1 TiB cache
	// is scrubbed in about 6 hours).
	ScrubRate int64 `json:"scrub_rate,omitempty"`

	// Default names the upstream that serves requests naming no registry
	// (neither by containerd's ns parameter nor by a leading registry host
	// in the path). Default: docker.io when it is configured, else the
	// first upstream.
	Default string `json:"default,omitempty"`

	// Upstreams are the registries this mirror serves; no other registry
	// is reachable through it. Default: docker.io and the well-known public
	// registries, each at its public endpoint.
	Upstreams []Upstream `json:"upstreams,omitempty"`

	// Allow lists the repositories that may be served, as
	// REGISTRY/REPOSITORY[:TAG] patterns ("docker.io/library/*",
	// "ghcr.io/acme/**"): `*` matches within one path component or tag,
	// `**` across components. When any allow pattern is given here, every
	// other repository of every registry is denied; an upstream's own allow
	// patterns add to these for that registry only. A pattern with a tag
	// limits the tags that resolve; content by digest of an allowed
	// repository stays reachable. Default: none, everything is allowed.
	Allow []string `json:"allow,omitempty"`

	// Deny lists repositories (and tags) that are never served, in the
	// syntax of allow; deny wins over allow. A pattern with a tag refuses
	// requests by matching tags and hides them from tag lists. A refused
	// request gets 403 DENIED naming the rule, makes no upstream request,
	// and is logged and counted (caddy_registry_cache_policy_refusals_total).
	// Rules apply to cached content, to warm, to the catalog and to tag
	// lists. Default: none.
	Deny []string `json:"deny,omitempty"`

	// DenyDigest lists digests ("sha256:<hex>") never served, under any
	// repository or tag, cached or not: manifests, and blobs too. A tag
	// that resolves to one is refused. Default: none.
	DenyDigest []string `json:"deny_digest,omitempty"`

	// Verify are signature rules: a manifest or index of a repository they
	// name is served only with a valid signature from their trust (cosign
	// key-based signatures from the sha256-<hex>.sig tag or the referrers,
	// sigstore bundles among the referrers, keyless certificates under a
	// trusted root). Default: none.
	Verify []Verify `json:"verify,omitempty"`

	mirror      *mirror.Mirror
	store       *cache.Store
	tier        *s3tier.Tier // nil: no shared bucket
	clients     []*upstream.Client
	dir         string
	provisioned time.Time
	history     *history
	scheduler   *schedule.Scheduler // nil: no sync rules
	logger      *zap.Logger
	// budgetOnce applies MaxSize to a cache that a reload found open, once
	// the handler serves: a reload that fails after provisioning it must
	// not leave its budget behind.
	budgetOnce *sync.Once
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.registry_cache",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision checks the configuration, then builds the upstream clients
// and opens (or reuses) the cache of the storage directory. Every value is
// checked before anything opens: a bad one fails the load with no
// directory created, no cache opened and no goroutine started.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	s, err := h.settings()
	if err != nil {
		return err
	}
	// Metrics go into the config's registry, on Caddy's admin /metrics and
	// on any site's metrics handler.
	um, err := newUpstreamMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return fmt.Errorf("registering upstream metrics: %w", err)
	}
	for _, us := range s.upstreams {
		opts := us.options
		opts.Logger, opts.OnResponse = h.logger.Named("upstream"), um.observe
		c, err := upstream.New(us.config, opts)
		if err != nil {
			return fmt.Errorf("upstream %s: %w", us.config.Name, err)
		}
		// Cleanup closes them, after a failed Provision too.
		h.clients = append(h.clients, c)
	}
	pooled, loaded, err := openStore(s, h.logger)
	if err != nil {
		return err
	}
	// From here on the handler holds one use of the cache, which Cleanup
	// releases (Caddy calls Cleanup when Provision fails, too).
	h.dir = s.dir
	if loaded {
		noteKept(h.logger, s.dir, pooled.kept, keptSettings(s))
	}
	store := pooled.store
	mc := s.mirror
	mc.Upstreams, mc.Logger = h.clients, h.logger
	mc.Store, mc.Records, mc.Peers = pooled.content, pooled.records, pooled.peers
	// http.handlers.registry_cache.audit: a log block can send it to its
	// own file.
	mc.Audit = h.logger.Named("audit")
	m, err := mirror.New(mc)
	if err != nil {
		return err
	}
	h.mirror = m
	h.store = store
	h.tier = pooled.tier
	h.provisioned = time.Now()
	h.budgetOnce = new(sync.Once)
	if len(s.sync) > 0 {
		h.scheduler, err = schedule.New(schedule.Config{
			Rules: s.sync, Source: m, Pins: store,
			// Each config's scheduler keeps its own pins during a reload.
			Owner:     fmt.Sprintf("sync %p", h),
			BeforeRun: h.applyBudget,
			Logger:    h.logger.Named("sync"),
		})
		if err != nil {
			return err
		}
		// Runs until the config is unloaded, then releases its pins.
		h.scheduler.Start(ctx)
	}
	h.history = startHistory(h)
	addLive(h)
	err = ctx.GetMetricsRegistry().Register(newCacheCollector(s.dir, h.figures))
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		// Another handler of this config serves the same directory and
		// already reports it.
		h.logger.Debug("cache metrics already registered for this storage", zap.String("storage", s.dir))
	} else if err != nil {
		return fmt.Errorf("registering cache metrics: %w", err)
	}
	h.logger.Info("registry cache ready", zap.String("storage", s.dir), zap.Bool("shared", h.tier != nil),
		zap.Int("upstreams", len(h.clients)), zap.Duration("tag_ttl", time.Duration(h.TagTTL)))
	return nil
}

// Validate checks the configuration without any I/O. Provision has run
// the same checks before it opened anything; Caddy calls Validate after.
func (h *Handler) Validate() error {
	return h.check()
}

// Cleanup releases this handler's use of the shared cache; the cache
// closes when the last configuration using its directory is unloaded.
func (h *Handler) Cleanup() error {
	removeLive(h)
	if h.history != nil {
		h.history.stopHistory()
	}
	var err error
	if h.dir != "" {
		err = releaseStore(h.dir)
	}
	// After the store: its fills, cancelled when it closes, hand back no
	// connection to reuse. A Provision that failed before the store
	// opened may have made clients already.
	for _, c := range h.clients {
		c.Close()
	}
	return err
}

// ServeHTTP hands registry API requests (/v2 and below) to the mirror and
// anything else to the next handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path != "/v2" && !strings.HasPrefix(r.URL.Path, "/v2/") {
		return next.ServeHTTP(w, r)
	}
	h.applyBudget()
	user := siteUser(r)
	ctx := r.Context()
	if strings.Contains(r.URL.Path, "/manifests/") {
		// Only a manifest request may be a pull the audit log records: a
		// GET, or the HEAD by tag of a Docker-style pull, whose GET by
		// digest that follows is known by the same client.
		ctx = mirror.WithAuditClient(ctx, mirror.AuditClient{Address: clientIP(r), User: user})
	}
	if user != "" {
		ctx = mirror.WithSiteAuthenticated(ctx)
	}
	if ctx != r.Context() {
		r = r.WithContext(ctx)
	}
	h.mirror.ServeHTTP(w, r)
	return nil
}

// siteUser returns the user an authentication handler of the site
// (basic_auth, say) authenticated before the request got here; empty when
// none. With one, the Authorization header is the site's, not registry
// credentials.
func siteUser(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	id, _ := repl.GetString("http.auth.user.id")
	return id
}

// clientIP returns the client's address as Caddy determined it (through
// the server's trusted_proxies), else the connection's.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// applyBudget gives the cache this handler's max_size and max_idle, once.
func (h *Handler) applyBudget() {
	h.budgetOnce.Do(func() {
		h.store.SetMaxBytes(h.MaxSize)
		h.store.SetMaxIdle(time.Duration(h.MaxIdle))
	})
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
