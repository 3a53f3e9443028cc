package upstream

import (
	"testing"
	"time"
)

func TestOptionsWithDefaults(t *testing.T) {
	get := map[string]func(Options) any{
		"DialTimeout":           func(o Options) any { return o.DialTimeout },
		"ResponseHeaderTimeout": func(o Options) any { return o.ResponseHeaderTimeout },
		"StallTimeout":          func(o Options) any { return o.StallTimeout },
		"FailureCooldown":       func(o Options) any { return o.FailureCooldown },
		"BudgetProbe":           func(o Options) any { return o.BudgetProbe },
		"RateLimitReserve":      func(o Options) any { return o.RateLimitReserve },
		"PublicEndpoints":       func(o Options) any { return o.PublicEndpoints },
		"Transport set":         func(o Options) any { return o.Transport != nil },
		"Logger set":            func(o Options) any { return o.Logger != nil },
		"Now set":               func(o Options) any { return o.Now != nil },
	}
	tests := []struct {
		name string
		in   Options
		want map[string]any
	}{
		{"zero gets the defaults", Options{}, map[string]any{
			"DialTimeout": DefaultDialTimeout, "ResponseHeaderTimeout": DefaultResponseHeaderTimeout,
			"StallTimeout": DefaultStallTimeout, "FailureCooldown": DefaultFailureCooldown,
			"BudgetProbe": DefaultBudgetProbe, "RateLimitReserve": 0, "PublicEndpoints": false,
			// New builds the transport, around its dial guard.
			"Transport set": false, "Logger set": true, "Now set": true,
		}},
		{"set values are kept", Options{DialTimeout: time.Second, ResponseHeaderTimeout: 2 * time.Second,
			StallTimeout: 3 * time.Second, FailureCooldown: 4 * time.Second, BudgetProbe: 5 * time.Second,
			RateLimitReserve: 6, PublicEndpoints: true}, map[string]any{
			"DialTimeout": time.Second, "ResponseHeaderTimeout": 2 * time.Second, "StallTimeout": 3 * time.Second,
			"FailureCooldown": 4 * time.Second, "BudgetProbe": 5 * time.Second, "RateLimitReserve": 6,
			"PublicEndpoints": true,
		}},
		{"negative means the default", Options{DialTimeout: -1, StallTimeout: -1, RateLimitReserve: -3}, map[string]any{
			"DialTimeout": DefaultDialTimeout, "StallTimeout": DefaultStallTimeout, "RateLimitReserve": 0,
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
