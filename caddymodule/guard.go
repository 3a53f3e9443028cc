package caddymodule

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/regcache/regcache/mirror"
)

// LoginLimit bounds the credential checks the mirror asks upstreams to
// make for clients logging in (its token endpoint /v2/_token, and Basic
// credentials on registry requests), so that it cannot serve as a
// password-guessing proxy. Each client address (as Caddy resolves it,
// behind trusted_proxies; an IPv6 client by its /64) has a bucket of
// checks, and all clients share one: a check takes one from both, and a
// check the upstream accepts gives them back, so only refused checks (and
// those the upstream could not answer) cost. A client whose bucket, or
// the shared one, is empty gets 429 TOOMANYREQUESTS with a Retry-After, and
// the upstream is not asked; these refusals are counted in the metric
// caddy_registry_cache_login_throttled_total. Credentials with a standing
// verdict of the upstream (accepted ones for 5 minutes, refused ones for a
// minute, remembered by a hash) cost nothing.
type LoginLimit struct {
	// Off turns the limits off. Default: false.
	Off bool `json:"off,omitempty"`
	// Burst is how many checks a client address may have refused in a
	// row. Default: 10.
	Burst int `json:"burst,omitempty"`
	// Interval is how often a client address earns one more check once
	// its burst is spent. Default: 10s (6 a minute).
	Interval caddy.Duration `json:"interval,omitempty"`
	// TotalBurst is how many checks all clients together may have refused
	// in a row. Default: 100.
	TotalBurst int `json:"total_burst,omitempty"`
	// TotalInterval is how often all clients together earn one more check
	// once that burst is spent. Default: 1s (60 a minute).
	TotalInterval caddy.Duration `json:"total_interval,omitempty"`
}

// limits returns the mirror's LoginLimits of l (nil: the defaults).
func (l *LoginLimit) limits() mirror.LoginLimits {
	if l == nil {
		return mirror.LoginLimits{}
	}
	if l.Off {
		return mirror.LoginLimits{Burst: -1}
	}
	return mirror.LoginLimits{
		Burst: l.Burst, Interval: time.Duration(l.Interval),
		TotalBurst: l.TotalBurst, TotalInterval: time.Duration(l.TotalInterval),
	}
}

// validate checks l.
func (l *LoginLimit) validate() error {
	if l == nil {
		return nil
	}
	if l.Burst < 0 || l.TotalBurst < 0 || l.Interval < 0 || l.TotalInterval < 0 {
		return fmt.Errorf("login_limit: burst, interval, total_burst and total_interval must not be negative")
	}
	return nil
}

// unmarshalLoginLimit reads `login_limit off` or `login_limit { … }`.
func unmarshalLoginLimit(d *caddyfile.Dispenser) (*LoginLimit, error) {
	l := &LoginLimit{}
	if d.NextArg() {
		if d.Val() != "off" {
			return nil, d.Errf("login_limit: %q is not off (or a block)", d.Val())
		}
		l.Off = true
		return l, nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		switch opt {
		case "burst", "total_burst":
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return nil, d.Errf("login_limit %s: %q is not a positive number", opt, d.Val())
			}
			if opt == "burst" {
				l.Burst = n
			} else {
				l.TotalBurst = n
			}
		case "interval", "total_interval":
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return nil, d.Errf("login_limit %s: %q is not a positive duration", opt, d.Val())
			}
			if opt == "interval" {
				l.Interval = caddy.Duration(dur)
			} else {
				l.TotalInterval = caddy.Duration(dur)
			}
		default:
			return nil, d.Errf("unrecognized login_limit option %q", opt)
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return l, nil
}

// parseNetworks parses allowed_networks: CIDR prefixes, or single
// addresses.
func parseNetworks(networks []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(networks))
	for _, n := range networks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			ip, ierr := netip.ParseAddr(n)
			if ierr != nil {
				return nil, fmt.Errorf("allowed_networks: %q is neither a CIDR prefix nor an IP address", n)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// clientAddress returns the client address of a request as Caddy resolved
// it: the remote address, or the address a trusted proxy reported.
func clientAddress(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}
