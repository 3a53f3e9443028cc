package caddymodule

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/s3tier"
	"github.com/regcache/regcache/schedule"
	"github.com/regcache/regcache/upstream"
)

// settings are the configurations of the packages a handler wires
// together, mapped once from the Handler's fields and checked whole
// before anything opens. Each package applies its own defaults to the
// values left zero; the fields the wiring supplies (loggers, the store,
// the upstream clients, metrics hooks) are set when it runs.
type settings struct {
	// dir is the storage directory, absolute, placeholders resolved.
	dir string
	// cache is the cache's configuration (without Logger and Shared).
	cache cache.Options
	// s3 is the shared bucket's configuration (without Logger); nil
	// without one.
	s3 *s3tier.Config
	// upstreams are the upstream clients' configurations (without Logger
	// and OnResponse).
	upstreams []upstreamSettings
	// mirror is the mirror's configuration (without Upstreams, Store,
	// Logger and Audit).
	mirror mirror.Config
	// sync are the sync rules; none without.
	sync []schedule.Rule
}

// upstreamSettings configure one upstream client.
type upstreamSettings struct {
	config  upstream.Config
	options upstream.Options
}

// check checks every value of the handler that needs no I/O and no
// placeholder resolved. Provision runs it before anything else; Validate
// runs it too.
func (h *Handler) check() error {
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"max_size", h.MaxSize}, {"memory", h.Memory}, {"fill_retries", int64(h.FillRetries)},
		{"fill_connections", int64(h.FillConnections)}, {"fill_split_size", h.FillSplitSize},
		{"ingest_max_size", h.IngestMaxSize}, {"max_downloads", int64(h.MaxDownloads)},
		{"max_upstream_requests", int64(h.MaxUpstreamRequests)}, {"scrub_rate", h.ScrubRate},
		{"rate_limit_reserve", int64(h.RateLimitReserve)}, {"slow_source_rate", h.SlowSourceRate},
	} {
		if c.v < 0 {
			return fmt.Errorf("%s must not be negative, got %d", c.name, c.v)
		}
	}
	for _, c := range []struct {
		name string
		d    caddy.Duration
	}{
		{"tag_ttl", h.TagTTL}, {"stale_if_error", h.StaleIfError}, {"ingest_max_age", h.IngestMaxAge},
		{"access_ttl", h.AccessTTL}, {"max_idle", h.MaxIdle}, {"connect_timeout", h.ConnectTimeout},
		{"response_timeout", h.ResponseTimeout}, {"stall_timeout", h.StallTimeout},
	} {
		if c.d < 0 {
			return fmt.Errorf("%s must not be negative, got %s", c.name, time.Duration(c.d))
		}
	}
	if h.TokenRealm != "" {
		p, err := url.Parse(h.TokenRealm)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("token_realm %q must be an absolute http or https URL", h.TokenRealm)
		}
	}
	if h.S3 != nil {
		if err := h.S3.validate(); err != nil {
			return err
		}
	}
	if err := h.LoginLimit.validate(); err != nil {
		return err
	}
	if _, err := parseNetworks(h.AllowedNetworks); err != nil {
		return err
	}
	if err := h.checkUpstreams(); err != nil {
		return err
	}
	return h.checkSync()
}

// checkUpstreams checks the upstreams' names and URLs, and the default.
func (h *Handler) checkUpstreams() error {
	seen := make(map[string]bool, len(h.Upstreams))
	for _, u := range h.Upstreams {
		name := mirror.CanonicalRegistry(u.Name)
		if name == "" || strings.ContainsAny(name, "/ ") {
			return fmt.Errorf("upstream name %q is not a registry name", u.Name)
		}
		if seen[name] {
			return fmt.Errorf("upstream %s is configured twice", name)
		}
		seen[name] = true
		for _, raw := range u.URLs {
			p, err := url.Parse(raw)
			if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
				return fmt.Errorf("upstream %s: URL %q must be an absolute http or https URL", name, raw)
			}
		}
	}
	if h.Default != "" && len(h.Upstreams) > 0 && !seen[mirror.CanonicalRegistry(h.Default)] {
		return fmt.Errorf("default upstream %q is not among the configured upstreams", h.Default)
	}
	return nil
}

// upstreamList returns the configured upstreams, or the well-known public
// registries when none is configured.
func (h *Handler) upstreamList() []Upstream {
	if len(h.Upstreams) > 0 {
		return h.Upstreams
	}
	ups := make([]Upstream, 0, len(mirror.KnownRegistries()))
	for _, name := range mirror.KnownRegistries() {
		ups = append(ups, Upstream{Name: name})
	}
	return ups
}

// fillDefaults fills in the defaults that are the handler's own: the
// storage directory, under Caddy's data directory, and the disk budget,
// DefaultMaxSize (the cache's own zero budget means none).
func (h *Handler) fillDefaults() {
	if h.Storage == "" {
		h.Storage = filepath.Join(caddy.AppDataDir(), "registry_cache")
	}
	if h.MaxSize == 0 {
		h.MaxSize = DefaultMaxSize
	}
}

// showEffective writes the effective values of the other main settings of
// s back into the handler, as the config API shows them: the values the
// packages that own them run with (their WithDefaults).
func (h *Handler) showEffective(s settings) {
	h.Memory = s.cache.WithDefaults().MemoryBytes
	mc := s.mirror.WithDefaults()
	h.TagTTL, h.NegativeTTL = caddy.Duration(mc.TagTTL), caddy.Duration(mc.NegativeTTL)
}

// settings checks the handler, resolves its placeholders and maps its
// fields onto the packages' configurations. It opens nothing and starts
// nothing; the only I/O is reading the policy's key and trusted root
// files, whose errors fail the load.
func (h *Handler) settings() (settings, error) {
	if err := h.check(); err != nil {
		return settings{}, err
	}
	h.fillDefaults()
	repl := caddy.NewReplacer()
	var s settings
	dir, err := filepath.Abs(repl.ReplaceAll(h.Storage, ""))
	if err != nil {
		return s, fmt.Errorf("resolving storage directory %q: %w", h.Storage, err)
	}
	s.dir = dir
	s.cache = cache.Options{
		Dir:         dir,
		MemoryBytes: h.Memory,
		MaxBytes:    h.MaxSize,
		MaxIdle:     time.Duration(h.MaxIdle),
		MaxFills:    h.MaxDownloads,

		FillRetries:     h.FillRetries,
		FillConnections: h.FillConnections,
		FillSplitSize:   h.FillSplitSize,
		SlowSourceRate:  h.SlowSourceRate,
		IngestMaxBytes:  h.IngestMaxSize,
		IngestMaxAge:    time.Duration(h.IngestMaxAge),
		ScrubInterval:   time.Duration(h.ScrubInterval),
		ScrubRate:       h.ScrubRate,
	}
	if h.S3 != nil {
		tc := h.S3.tierConfig(repl)
		if err := tc.Check(); err != nil {
			return s, err
		}
		s.s3 = &tc
	}
	allowed, err := parseNetworks(h.AllowedNetworks)
	if err != nil {
		return s, err
	}
	var names []string
	for _, u := range h.upstreamList() {
		name := mirror.CanonicalRegistry(u.Name)
		names = append(names, name)
		us := upstreamSettings{
			config: upstream.Config{
				Name:      name,
				Endpoints: upstreamURLs(u),
				Username:  repl.ReplaceAll(u.Username, ""),
				Password:  repl.ReplaceAll(u.Password, ""),

				TrustedRealmHosts: u.TrustedRealms,
			},
			options: upstream.Options{
				DialTimeout:           time.Duration(h.ConnectTimeout),
				ResponseHeaderTimeout: time.Duration(h.ResponseTimeout),
				StallTimeout:          time.Duration(h.StallTimeout),
				RateLimitReserve:      h.RateLimitReserve,
				AllowedNetworks:       allowed,
			},
		}
		us.options.PublicEndpoints = knownEndpointsOnly(name, us.config.Endpoints)
		// An endpoint that is not the registry itself is a mirror of it
		// (another regcache, say): tell it the registry, as containerd does.
		if origin, ok := mirror.RegistryOrigin(name); ok {
			us.config.Namespace, us.config.Origin = name, origin
		}
		s.upstreams = append(s.upstreams, us)
	}
	// The policy is built here: a bad pattern, key or trusted root fails
	// the load before anything opens.
	policy, err := h.buildPolicy()
	if err != nil {
		return s, fmt.Errorf("policy: %w", err)
	}
	s.mirror = mirror.Config{
		Default:             h.Default,
		TagTTL:              time.Duration(h.TagTTL),
		StaleIfError:        time.Duration(h.StaleIfError),
		NegativeTTL:         time.Duration(h.NegativeTTL),
		AccessTTL:           time.Duration(h.AccessTTL),
		MaxUpstreamRequests: h.MaxUpstreamRequests,
		Policy:              policy,
		LoginLimits:         h.LoginLimit.limits(),
		ClientAddress:       clientAddress,

		IgnoreClientCredentials: h.DisableClientLogin,
		DisablePrefetch:         h.DisablePrefetch,
		TokenRealm:              h.TokenRealm,
	}
	h.showEffective(s)
	defaultName := mirror.DefaultRegistry(h.Default, names)
	for _, r := range h.Sync {
		ref, err := mirror.ParseImageRef(r.Image, defaultName, true)
		if err != nil {
			return s, fmt.Errorf("sync %s: %w", r.Image, err)
		}
		if !slices.Contains(names, ref.Registry) {
			return s, fmt.Errorf("sync %s: registry %s is not among the upstreams", r.Image, ref.Registry)
		}
	}
	s.sync = h.syncRules()
	return s, nil
}
