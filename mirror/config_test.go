package mirror

import (
	"net/http"
	"testing"
	"time"
)

func TestConfigWithDefaults(t *testing.T) {
	get := map[string]func(Config) any{
		"TagTTL":              func(c Config) any { return c.TagTTL },
		"NegativeTTL":         func(c Config) any { return c.NegativeTTL },
		"AccessTTL":           func(c Config) any { return c.AccessTTL },
		"StaleIfError":        func(c Config) any { return c.StaleIfError },
		"MaxUpstreamRequests": func(c Config) any { return c.MaxUpstreamRequests },
		"LoginLimits":         func(c Config) any { return c.LoginLimits },
		"Default":             func(c Config) any { return c.Default },
		"TokenRealm":          func(c Config) any { return c.TokenRealm },
		"Peers":               func(c Config) any { return c.Peers },
		"ClientAddress":       func(c Config) any { return c.ClientAddress(&http.Request{RemoteAddr: "192.0.2.1:4000"}) },
		"Logger set":          func(c Config) any { return c.Logger != nil },
		"Now set":             func(c Config) any { return c.Now != nil },
		"Policy set":          func(c Config) any { return c.Policy != nil },
		"Audit set":           func(c Config) any { return c.Audit != nil },
	}
	defaultLimits := LoginLimits{Burst: DefaultLoginBurst, Interval: DefaultLoginInterval,
		TotalBurst: DefaultLoginTotalBurst, TotalInterval: DefaultLoginTotalInterval}
	tests := []struct {
		name string
		in   Config
		want map[string]any
	}{
		{"zero gets the defaults", Config{}, map[string]any{
			"TagTTL": DefaultTagTTL, "NegativeTTL": DefaultNegativeTTL, "AccessTTL": DefaultAccessTTL,
			"MaxUpstreamRequests": DefaultMaxUpstreamRequests, "LoginLimits": defaultLimits,
			"Peers": Peers(noPeers{}), "ClientAddress": "192.0.2.1:4000", "Logger set": true, "Now set": true,
			// No default: no limit, the upstreams' default, the request's
			// host, no policy, no audit log.
			"StaleIfError": time.Duration(0), "Default": "", "TokenRealm": "", "Policy set": false, "Audit set": false,
		}},
		{"set values are kept", Config{
			TagTTL: time.Minute, NegativeTTL: 2 * time.Second, AccessTTL: 3 * time.Minute, StaleIfError: time.Hour,
			MaxUpstreamRequests: 5, LoginLimits: LoginLimits{Burst: 1, Interval: time.Second, TotalBurst: 2, TotalInterval: time.Minute},
			Default: "ghcr.io", TokenRealm: "https://m.example/v2/_token",
			ClientAddress: func(*http.Request) string { return "peer" },
		}, map[string]any{
			"TagTTL": time.Minute, "NegativeTTL": 2 * time.Second, "AccessTTL": 3 * time.Minute,
			"StaleIfError": time.Hour, "MaxUpstreamRequests": 5,
			"LoginLimits": LoginLimits{Burst: 1, Interval: time.Second, TotalBurst: 2, TotalInterval: time.Minute},
			"Default":     "ghcr.io", "TokenRealm": "https://m.example/v2/_token", "ClientAddress": "peer",
		}},
		{"negative values", Config{TagTTL: -1, NegativeTTL: -1, AccessTTL: -1, MaxUpstreamRequests: -1, LoginLimits: LoginLimits{Burst: -1}},
			map[string]any{
				"TagTTL": DefaultTagTTL, "AccessTTL": DefaultAccessTTL, "MaxUpstreamRequests": DefaultMaxUpstreamRequests,
				// Negative turns the negative cache and the login limits off.
				"NegativeTTL": time.Duration(-1),
				"LoginLimits": LoginLimits{Burst: -1, Interval: DefaultLoginInterval, TotalBurst: DefaultLoginTotalBurst,
					TotalInterval: DefaultLoginTotalInterval},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.WithDefaults()
			for field, want := range tc.want {
				if g := get[field](got); g != want {
					t.Errorf("WithDefaults().%s = %v, want %v", field, g, want)
				}
			}
		})
	}
}
