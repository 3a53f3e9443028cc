package upstream

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRateLimit(t *testing.T) {
	tests := []struct {
		name             string
		limit, remaining string // "" : header absent
		want             RateLimit
		ok               bool
	}{
		{"docker hub", "100;w=21600", "76;w=21600", RateLimit{Limit: 100, Remaining: 76, Window: 6 * time.Hour}, true},
		{"no window", "200", "3", RateLimit{Limit: 200, Remaining: 3}, true},
		{"window on remaining only", "200", "3;w=60", RateLimit{Limit: 200, Remaining: 3, Window: time.Minute}, true},
		{"spaces", " 100 ; w=3600 ", "0 ;w=3600", RateLimit{Limit: 100, Remaining: 0, Window: time.Hour}, true},
		{"other params", "100;w=21600;burst=5", "5", RateLimit{Limit: 100, Remaining: 5, Window: 6 * time.Hour}, true},
		{"bad window ignored", "100;w=soon", "5", RateLimit{Limit: 100, Remaining: 5}, true},
		{"no limit", "", "3", RateLimit{}, false},
		{"no remaining", "100;w=1", "", RateLimit{}, false},
		{"neither", "", "", RateLimit{}, false},
		{"not a number", "x;w=1", "3;w=1", RateLimit{}, false},
		{"negative", "100", "-1", RateLimit{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.limit != "" {
				h.Set("RateLimit-Limit", tc.limit)
			}
			if tc.remaining != "" {
				h.Set("ratelimit-remaining", tc.remaining)
			}
			got, ok := ParseRateLimit(h)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ParseRateLimit(%q, %q) = %+v, %v; want %+v, %v", tc.limit, tc.remaining, got, ok, tc.want, tc.ok)
			}
		})
	}
}
