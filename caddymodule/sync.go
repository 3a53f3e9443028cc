package caddymodule

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/schedule"
)

// SyncRule keeps an image, or chosen tags of a repository, in the cache
// before any client asks for them. Each run lists the repository's tags
// (one upstream request), asks the upstream with a HEAD about each chosen
// tag the cache has (free on Docker Hub), and fetches what is new or
// moved: manifests and blobs, for an index only the chosen platforms'.
// Runs go through the mirror's own pull path, so rate_limit_reserve,
// max_downloads and every check of a client's pull apply. The images a
// rule keeps are never evicted (neither by max_size nor max_idle) while
// the rule keeps them. When the upstream's pull budget is spent (a 429, or
// rate_limit_reserve reached), the run stops, the rule shows as paused,
// and its next run resumes.
type SyncRule struct {
	// Image is the image (docker.io/library/alpine:3.19, …@sha256:…) or
	// the repository (docker.io/library/alpine, ghcr.io/owner/app) to
	// keep; a name without a registry is the default upstream's, and a
	// Docker Hub name of one component gets library/. It also names the
	// rule (caddy registry-cache sync RULE). Required.
	Image string `json:"image"`

	// Tags choose the repository's tags by name: globs ("3.*",
	// "*-alpine"), or regular expressions after a ~ ("~3\\.[0-9]+") that
	// must match the whole tag. Default: every tag (bounded by semver and
	// newest, which keep version tags only).
	Tags []string `json:"tags,omitempty"`

	// Semver are constraints (">=1.25", "<2", "~1.2", "^3") that every
	// tag that reads as a version must meet. A tag that is not a version
	// (latest) is kept only when tags names it. Default: none.
	Semver []string `json:"semver,omitempty"`

	// Newest keeps only the N highest versions among the chosen tags
	// (tags that are not versions are not counted). Default: 0, no limit.
	Newest int `json:"newest,omitempty"`

	// Platforms limit multi-platform images to these (os/arch[/variant],
	// "linux/amd64", "linux/arm/v7"). Default: every platform.
	Platforms []string `json:"platforms,omitempty"`

	// Every is the interval between runs, jittered by up to a tenth
	// either way so that offices do not all start at the same second; the
	// first run comes a minute after the config loads, plus up to a tenth
	// of it (at most five minutes). At least 1m. Default: 6h.
	Every caddy.Duration `json:"every,omitempty"`
}

// rule converts the config to the scheduler's rule.
func (r SyncRule) rule() schedule.Rule {
	return schedule.Rule{Name: r.Image, Tags: r.Tags, Semver: r.Semver, Newest: r.Newest,
		Platforms: r.Platforms, Every: time.Duration(r.Every)}
}

// syncRules converts the handler's sync rules.
func (h *Handler) syncRules() []schedule.Rule {
	rules := make([]schedule.Rule, 0, len(h.Sync))
	for _, r := range h.Sync {
		rules = append(rules, r.rule())
	}
	return rules
}

// unmarshalSync reads `sync <image> { … }`.
func unmarshalSync(d *caddyfile.Dispenser) (SyncRule, error) {
	var r SyncRule
	if !d.NextArg() {
		return r, d.ArgErr()
	}
	r.Image = d.Val()
	if d.NextArg() {
		return r, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		args := d.RemainingArgs()
		if len(args) == 0 {
			return r, d.ArgErr()
		}
		switch opt {
		case "tags":
			r.Tags = append(r.Tags, args...)
		case "semver":
			r.Semver = append(r.Semver, args...)
		case "platforms":
			r.Platforms = append(r.Platforms, args...)
		case "newest", "every":
			if len(args) != 1 {
				return r, d.ArgErr()
			}
			if opt == "every" {
				dur, err := caddy.ParseDuration(args[0])
				if err != nil {
					return r, d.Errf("sync %s: every: %v", r.Image, err)
				}
				r.Every = caddy.Duration(dur)
				continue
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return r, d.Errf("sync %s: newest: %q is not a positive number", r.Image, args[0])
			}
			r.Newest = n
		default:
			return r, d.Errf("unrecognized sync option %q", opt)
		}
	}
	return r, nil
}

// checkSync validates the sync rules and max_idle.
func (h *Handler) checkSync() error {
	if h.MaxIdle < 0 {
		return fmt.Errorf("max_idle must not be negative, got %s", time.Duration(h.MaxIdle))
	}
	for _, r := range h.Sync {
		if r.Image == "" {
			return fmt.Errorf("a sync rule needs an image or repository")
		}
	}
	return schedule.Check(h.syncRules())
}

// Interface guards: the mirror is the scheduler's source, the cache keeps
// its pins.
var (
	_ schedule.Source = (*mirror.Mirror)(nil)
	_ schedule.Pinner = (*cache.Store)(nil)
)
