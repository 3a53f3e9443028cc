package cache

import (
	"testing"
	"time"
)

func TestOptionsWithDefaults(t *testing.T) {
	get := map[string]func(Options) any{
		"MemoryBytes":         func(o Options) any { return o.MemoryBytes },
		"InlineLimit":         func(o Options) any { return o.InlineLimit },
		"AccessFlushInterval": func(o Options) any { return o.AccessFlushInterval },
		"WriteRetryInterval":  func(o Options) any { return o.WriteRetryInterval },
		"MaxFills":            func(o Options) any { return o.MaxFills },
		"FillQueueTimeout":    func(o Options) any { return o.FillQueueTimeout },
		"FillRetries":         func(o Options) any { return o.FillRetries },
		"FillRetryBackoff":    func(o Options) any { return o.FillRetryBackoff },
		"FillConnections":     func(o Options) any { return o.FillConnections },
		"FillSplitSize":       func(o Options) any { return o.FillSplitSize },
		"FillSplitAfter":      func(o Options) any { return o.FillSplitAfter },
		"SlowSourceAfter":     func(o Options) any { return o.SlowSourceAfter },
		"SlowSourceRate":      func(o Options) any { return o.SlowSourceRate },
		"IngestMaxBytes":      func(o Options) any { return o.IngestMaxBytes },
		"IngestMaxAge":        func(o Options) any { return o.IngestMaxAge },
		"ScrubInterval":       func(o Options) any { return o.ScrubInterval },
		"ScrubRate":           func(o Options) any { return o.ScrubRate },
		"MaxBytes":            func(o Options) any { return o.MaxBytes },
		"MaxIdle":             func(o Options) any { return o.MaxIdle },
		"Dir":                 func(o Options) any { return o.Dir },
		"Logger set":          func(o Options) any { return o.Logger != nil },
		"Now set":             func(o Options) any { return o.Now != nil },
	}
	set := Options{
		Dir: "/srv/cache", MemoryBytes: 1 << 20, InlineLimit: 1 << 10, AccessFlushInterval: time.Second,
		WriteRetryInterval: 2 * time.Second, MaxFills: 3, FillQueueTimeout: 4 * time.Second, FillRetries: 5 + 1,
		FillRetryBackoff: time.Millisecond, FillConnections: 7, FillSplitSize: 8 << 20, FillSplitAfter: 9 * time.Millisecond,
		SlowSourceAfter: 11 * time.Second, SlowSourceRate: 12 << 10, IngestMaxBytes: 13 << 20, IngestMaxAge: 14 * time.Hour,
		ScrubInterval: 15 * time.Hour, ScrubRate: 16 << 20, MaxBytes: 17 << 20, MaxIdle: 18 * time.Hour,
	}
	tests := []struct {
		name string
		in   Options
		want map[string]any
	}{
		{"zero gets the defaults", Options{}, map[string]any{
			"MemoryBytes": int64(DefaultMemoryBytes), "InlineLimit": int64(DefaultInlineLimit),
			"AccessFlushInterval": DefaultAccessFlushInterval, "WriteRetryInterval": DefaultWriteRetryInterval,
			"MaxFills": DefaultMaxFills, "FillQueueTimeout": DefaultFillQueueTimeout, "FillRetries": DefaultFillRetries,
			"FillRetryBackoff": DefaultFillRetryBackoff, "FillConnections": DefaultFillConnections,
			"FillSplitSize": int64(DefaultFillSplitSize), "FillSplitAfter": DefaultFillSplitAfter,
			"SlowSourceAfter": DefaultSlowSourceAfter, "SlowSourceRate": int64(DefaultSlowSourceRate),
			"IngestMaxBytes": int64(DefaultIngestMaxBytes), "IngestMaxAge": DefaultIngestMaxAge,
			"ScrubInterval": DefaultScrubInterval, "ScrubRate": int64(DefaultScrubRate),
			// No default: zero is no budget, no idle eviction.
			"MaxBytes": int64(0), "MaxIdle": time.Duration(0), "Dir": "",
			"Logger set": true, "Now set": true,
		}},
		{"set values are kept", set, map[string]any{
			"MemoryBytes": int64(1 << 20), "InlineLimit": int64(1 << 10), "AccessFlushInterval": time.Second,
			"WriteRetryInterval": 2 * time.Second, "MaxFills": 3, "FillQueueTimeout": 4 * time.Second,
			"FillRetries": 6, "FillRetryBackoff": time.Millisecond, "FillConnections": 7,
			"FillSplitSize": int64(8 << 20), "FillSplitAfter": 9 * time.Millisecond, "SlowSourceAfter": 11 * time.Second,
			"SlowSourceRate": int64(12 << 10), "IngestMaxBytes": int64(13 << 20), "IngestMaxAge": 14 * time.Hour,
			"ScrubInterval": 15 * time.Hour, "ScrubRate": int64(16 << 20), "MaxBytes": int64(17 << 20),
			"MaxIdle": 18 * time.Hour, "Dir": "/srv/cache", "Logger set": true, "Now set": true,
		}},
		{"negative means the default, but not for the scrub", Options{MemoryBytes: -1, MaxFills: -1, ScrubInterval: -1, ScrubRate: -1},
			map[string]any{
				"MemoryBytes": int64(DefaultMemoryBytes), "MaxFills": DefaultMaxFills,
				"ScrubInterval": time.Duration(-1), "ScrubRate": int64(-1),
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
