package caddymodule

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

// parseCaddyfile builds a Handler from a registry_cache directive.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	registry_cache {
//		storage   [<directory>] {
//			s3 {
//				endpoint   <url>
//				bucket     <name>
//				region     <region>
//				access_key <key>
//				secret_key <secret>
//				prefix     <prefix>
//				path_style
//				lease_ttl  <duration>
//				chunk_size <size>
//			}
//		}
//		max_size  <size>
//		max_idle  <duration>
//		memory    <size>
//		tag_ttl   <duration>
//		stale_if_error <duration>
//		negative_ttl <duration>|off
//		rate_limit_reserve <pulls>
//		connect_timeout  <duration>
//		response_timeout <duration>
//		stall_timeout    <duration>
//		max_downloads    <n>
//		fill_retries     <n>
//		fill_connections <n>
//		fill_split_size  <size>
//		slow_source_rate <size>[/s]
//		ingest_max_size  <size>
//		ingest_max_age   <duration>
//		max_upstream_requests <n>
//		access_ttl       <duration>
//		scrub_interval   <duration>|off
//		scrub_rate       <size>[/s]
//		client_login     on|off
//		login_limit      off | {
//			burst          <n>
//			interval       <duration>
//			total_burst    <n>
//			total_interval <duration>
//		}
//		allowed_networks <cidr>...
//		prefetch         on|off
//		token_realm      <url>
//		default   <registry>
//		upstream  <registry> [<url>] {
//			url      <url>
//			username <username>
//			password <password>
//			trusted_realm <host>
//			allow  <pattern>...
//			deny   <pattern>...
//			verify <pattern>... { … }
//		}
//		allow       <registry/repository[:tag] pattern>...
//		deny        <registry/repository[:tag] pattern>...
//		deny_digest <digest>...
//		verify <registry/repository pattern>... {
//			key          <PEM public key file>
//			identity     <certificate identity> <OIDC issuer>
//			trusted_root <trusted_root.json file>
//			mode         enforce|audit
//			verdict_ttl  <duration>
//		}
//		sync <image or repository> {
//			tags      <glob or ~regex>...
//			semver    <constraint>...
//			newest    <n>
//			platforms <os/arch[/variant]>...
//			every     <duration>
//		}
//	}
//
// Sizes accept units (50GiB, 256MiB, 10GB) or plain bytes. upstream may be
// repeated, once per registry; url may be repeated inside its block to list
// endpoints tried in order. username and password accept placeholders such
// as {env.HUB_TOKEN}. Without any upstream, the mirror serves Docker Hub
// and the well-known public registries. negative_ttl off (or 0) disables
// the memory of upstream 404s. The s3 block of storage shares the cache
// with other nodes through a bucket; access_key and secret_key accept
// placeholders such as {env.S3_SECRET_KEY}. Durations accept d for days
// (max_idle 30d). sync may be repeated, once per image or repository;
// tags, semver and platforms may be repeated inside its block.
// scrub_interval off turns the
// background scrub of content at rest off; scrub_rate and
// slow_source_rate are in bytes per second (50MiB or 50MiB/s).
//
// allow, deny and verify patterns use `*` within one path component (or
// tag) and `**` across components; at the top level they start with the
// registry (docker.io/library/*), inside an upstream block they are
// relative to it (library/*). When any allow is given, everything else is
// denied; deny wins. key and identity may be repeated.
//
// login_limit bounds the credential checks of clients logging in, per client address and overall.
// allowed_networks lists internal networks (CIDR prefixes or addresses)
// that upstreams' redirects and token realms may lead to; it may be
// repeated.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "storage":
			if d.NextArg() {
				h.Storage = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				if d.Val() != "s3" {
					return d.Errf("unrecognized storage option %q", d.Val())
				}
				s3, err := unmarshalS3(d)
				if err != nil {
					return err
				}
				h.S3 = s3
			}
			if h.Storage == "" && h.S3 == nil {
				return d.ArgErr()
			}
		case "max_size", "memory", "ingest_max_size", "fill_split_size":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			size, err := parseSize(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			switch opt {
			case "max_size":
				h.MaxSize = size
			case "memory":
				h.Memory = size
			case "fill_split_size":
				h.FillSplitSize = size
			default:
				h.IngestMaxSize = size
			}
		case "max_idle":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("max_idle: %v", err)
			}
			h.MaxIdle = caddy.Duration(dur)
		case "sync":
			r, err := unmarshalSync(d)
			if err != nil {
				return err
			}
			h.Sync = append(h.Sync, r)
		case "tag_ttl", "stale_if_error", "ingest_max_age":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			switch opt {
			case "tag_ttl":
				h.TagTTL = caddy.Duration(dur)
			case "stale_if_error":
				h.StaleIfError = caddy.Duration(dur)
			default:
				h.IngestMaxAge = caddy.Duration(dur)
			}
		case "negative_ttl":
			if !d.NextArg() {
				return d.ArgErr()
			}
			ttl, err := parseNegativeTTL(d.Val())
			if err != nil {
				return d.Errf("negative_ttl: %v", err)
			}
			h.NegativeTTL = ttl
		case "rate_limit_reserve", "max_downloads", "max_upstream_requests", "fill_retries", "fill_connections":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("%s: %q is not a non-negative number", opt, d.Val())
			}
			switch opt {
			case "rate_limit_reserve":
				h.RateLimitReserve = n
			case "max_downloads":
				h.MaxDownloads = n
			case "fill_retries":
				h.FillRetries = n
			case "fill_connections":
				h.FillConnections = n
			default:
				h.MaxUpstreamRequests = n
			}
		case "connect_timeout", "response_timeout", "stall_timeout":
			opt := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			switch opt {
			case "connect_timeout":
				h.ConnectTimeout = caddy.Duration(dur)
			case "response_timeout":
				h.ResponseTimeout = caddy.Duration(dur)
			default:
				h.StallTimeout = caddy.Duration(dur)
			}
		case "access_ttl":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("access_ttl: %v", err)
			}
			h.AccessTTL = caddy.Duration(dur)
		case "scrub_interval", "scrub_rate":
			if err := h.unmarshalScrub(d); err != nil {
				return err
			}
		case "slow_source_rate":
			if !d.NextArg() {
				return d.ArgErr()
			}
			rate, err := parseRate(d.Val())
			if err != nil {
				return d.Errf("slow_source_rate: %v", err)
			}
			h.SlowSourceRate = rate
		case "client_login":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch d.Val() {
			case "on":
				h.DisableClientLogin = false
			case "off":
				h.DisableClientLogin = true
			default:
				return d.Errf("client_login: %q is neither on nor off", d.Val())
			}
		case "login_limit":
			l, err := unmarshalLoginLimit(d)
			if err != nil {
				return err
			}
			h.LoginLimit = l
		case "allowed_networks":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if _, err := parseNetworks(args); err != nil {
				return d.Errf("%v", err)
			}
			h.AllowedNetworks = append(h.AllowedNetworks, args...)
		case "prefetch":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch d.Val() {
			case "on":
				h.DisablePrefetch = false
			case "off":
				h.DisablePrefetch = true
			default:
				return d.Errf("prefetch: %q is neither on nor off", d.Val())
			}
		case "token_realm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.TokenRealm = d.Val()
		case "default":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Default = d.Val()
		case "allow":
			if err := unmarshalPatterns(d, &h.Allow); err != nil {
				return err
			}
		case "deny":
			if err := unmarshalPatterns(d, &h.Deny); err != nil {
				return err
			}
		case "deny_digest":
			if err := unmarshalPatterns(d, &h.DenyDigest); err != nil {
				return err
			}
		case "verify":
			v, err := unmarshalVerify(d)
			if err != nil {
				return err
			}
			h.Verify = append(h.Verify, v)
		case "upstream":
			u, err := unmarshalUpstream(d)
			if err != nil {
				return err
			}
			h.Upstreams = append(h.Upstreams, u)
		default:
			return d.Errf("unrecognized registry_cache option %q", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// unmarshalUpstream reads `upstream <name> [<url>] { … }`.
func unmarshalUpstream(d *caddyfile.Dispenser) (Upstream, error) {
	var u Upstream
	if !d.NextArg() {
		return u, d.ArgErr()
	}
	u.Name = d.Val()
	if d.NextArg() {
		u.URLs = append(u.URLs, d.Val())
	}
	if d.NextArg() {
		return u, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "allow", "deny":
			list := &u.Allow
			if opt == "deny" {
				list = &u.Deny
			}
			if err := unmarshalPatterns(d, list); err != nil {
				return u, err
			}
			continue
		case "verify":
			v, err := unmarshalVerify(d)
			if err != nil {
				return u, err
			}
			u.Verify = append(u.Verify, v)
			continue
		}
		if !d.NextArg() {
			return u, d.ArgErr()
		}
		switch opt {
		case "url":
			u.URLs = append(u.URLs, d.Val())
		case "username":
			u.Username = d.Val()
		case "password":
			u.Password = d.Val()
		case "trusted_realm":
			u.TrustedRealms = append(u.TrustedRealms, d.Val())
		default:
			return u, d.Errf("unrecognized upstream option %q", opt)
		}
		if d.NextArg() {
			return u, d.ArgErr()
		}
	}
	return u, nil
}

// parseRate reads a positive size per second: a size (50MiB), optionally
// followed by /s (50MiB/s).
func parseRate(v string) (int64, error) {
	rate, err := parseSize(strings.TrimSuffix(v, "/s"))
	if err != nil || rate == 0 {
		return 0, fmt.Errorf("%q is not a positive size per second", v)
	}
	return rate, nil
}

// unmarshalScrub reads `scrub_interval <duration>|off` and
// `scrub_rate <size>[/s]`.
func (h *Handler) unmarshalScrub(d *caddyfile.Dispenser) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	if opt == "scrub_rate" {
		rate, err := parseRate(d.Val())
		if err != nil {
			return d.Errf("scrub_rate: %v", err)
		}
		h.ScrubRate = rate
		return nil
	}
	if d.Val() == "off" {
		h.ScrubInterval = -1
		return nil
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return d.Errf("scrub_interval: %q is neither a positive duration nor off", d.Val())
	}
	h.ScrubInterval = caddy.Duration(dur)
	return nil
}

// parseNegativeTTL reads negative_ttl's value: a positive duration, or
// "off" or 0, which disable it (-1 in JSON, where 0 means the default).
func parseNegativeTTL(s string) (caddy.Duration, error) {
	if s == "off" {
		return -1, nil
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if dur < 0 {
		return 0, fmt.Errorf("%s is negative: use off to disable", s)
	}
	if dur == 0 {
		return -1, nil
	}
	return caddy.Duration(dur), nil
}

// parseSize reads a byte size such as 50GiB, 256MiB or 1048576.
func parseSize(s string) (int64, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, strconv.ErrRange
		}
		return n, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, err
	}
	if n > 1<<62 {
		return 0, strconv.ErrRange
	}
	return int64(n), nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
