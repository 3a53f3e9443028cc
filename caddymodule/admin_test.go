package caddymodule

import (
	"testing"
	"time"
)

func TestChartPoints(t *testing.T) {
	at := time.Unix(0, 0)
	s := func(min int, hits, misses, saved int64) sample {
		return sample{At: at.Add(time.Duration(min) * time.Minute), Hits: hits, Misses: misses, BytesFromCache: saved}
	}
	tests := []struct {
		name         string
		samples      []sample
		ratio, saved string
	}{
		{"no interval yet", []sample{s(0, 0, 0, 0)}, "", ""},
		{"one interval: a level line", []sample{s(0, 0, 0, 0), s(1, 1, 1, 100)}, "0.0,88.0 600.0,88.0", "0.0,36.0 600.0,36.0"},
		{"all hits, then all misses", []sample{s(0, 0, 0, 0), s(1, 4, 0, 50), s(2, 4, 4, 100)},
			"0.0,36.0 600.0,140.0", "0.0,88.0 600.0,36.0"},
		{"no requests in an interval: ratio 0", []sample{s(0, 5, 5, 0), s(1, 5, 5, 0), s(2, 5, 5, 0)},
			"0.0,140.0 600.0,140.0", "0.0,140.0 600.0,140.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ratio, saved := chartPoints(tc.samples)
			if ratio != tc.ratio || saved != tc.saved {
				t.Errorf("chartPoints = %q, %q; want %q, %q", ratio, saved, tc.ratio, tc.saved)
			}
		})
	}
}
