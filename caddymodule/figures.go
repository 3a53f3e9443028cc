package caddymodule

import (
	"time"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/s3tier"
	"github.com/regcache/regcache/schedule"
	"github.com/regcache/regcache/upstream"
)

// figures are the figures of one cache directory and the handler serving
// it, taken together at one moment from the cache, the mirror, the
// upstream clients, the sync rules and the shared bucket. The admin API's
// JSON (cacheStats), the metrics (cacheCollector) and the status page's
// history (sample) are renderings of it.
type figures struct {
	// At is when they were taken.
	At time.Time
	// Storage is the cache directory.
	Storage   string
	Cache     cache.Stats
	Integrity cache.IntegrityStats
	Mirror    mirror.Stats
	// Policy are the edge policy's rules with their counters; none
	// without a policy.
	Policy    []access.RuleStats
	Upstreams []upstreamFigures
	// Sync is the status of every sync rule; nil without rules.
	Sync []schedule.Status
	// Shared are the shared bucket's counters; nil without a bucket.
	Shared *s3tier.Stats
}

// upstreamFigures are the figures of one upstream client.
type upstreamFigures struct {
	Name   string
	Health []upstream.EndpointHealth
	// RateLimit is the pull budget it last reported, when HasRateLimit.
	RateLimit    upstream.RateLimit
	HasRateLimit bool
	// Held is true while manifest GETs are held back.
	Held             bool
	InternalRefusals int64
}

// figures takes the handler's figures.
func (h *Handler) figures() figures {
	f := figures{
		At:        time.Now(),
		Storage:   h.dir,
		Cache:     h.store.Stats(),
		Integrity: h.store.IntegrityStats(),
		Mirror:    h.mirror.Stats(),
		Policy:    h.mirror.PolicyStats(),
	}
	for _, c := range h.clients {
		uf := upstreamFigures{Name: c.Name(), Health: c.Health(), Held: c.Budget().Held,
			InternalRefusals: c.InternalRefusals()}
		uf.RateLimit, uf.HasRateLimit = c.RateLimit()
		f.Upstreams = append(f.Upstreams, uf)
	}
	if h.scheduler != nil {
		f.Sync = h.scheduler.Status()
	}
	if h.tier != nil {
		ss := h.tier.Stats()
		f.Shared = &ss
	}
	return f
}
