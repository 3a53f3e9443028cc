package episode

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func counted(entry observer.LoggedEntry) int64 {
	if v, ok := entry.ContextMap()["count"].(int64); ok {
		return v
	}
	return 0
}

func TestEpisode(t *testing.T) {
	tests := []struct {
		name  string
		steps func(l *Log, clk *clock)
		// want are the messages logged, in order, with the counts they
		// carry (0: none).
		want      []string
		wantCount []int64
	}{
		{"one occurrence", func(l *Log, _ *clock) { l.Event() }, []string{"over"}, []int64{0}},
		{"a thousand within the interval, then the end", func(l *Log, clk *clock) {
			for range 1000 {
				l.Event(zap.Int("i", 1))
				clk.Add(time.Millisecond)
			}
			l.End()
		}, []string{"over", "over: ended"}, []int64{0, 1000}},
		{"a lasting episode is counted once per interval", func(l *Log, clk *clock) {
			for range 130 {
				l.Event()
				clk.Add(time.Second)
			}
		}, []string{"over", "over", "over"}, []int64{0, 60, 60}},
		{"end without an episode", func(l *Log, _ *clock) { l.End() }, nil, nil},
		{"quiet for an interval begins a new episode", func(l *Log, clk *clock) {
			l.Event()
			l.Event()
			clk.Add(2 * time.Minute)
			l.Event()
		}, []string{"over", "over: ended", "over"}, []int64{0, 2, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			l := New(zap.New(core), zapcore.WarnLevel, "over", Options{Now: clk.Now})
			tc.steps(l, clk)
			got := logs.AllUntimed()
			if len(got) != len(tc.want) {
				t.Fatalf("%d lines %v, want %v", len(got), got, tc.want)
			}
			for i, e := range got {
				if e.Message != tc.want[i] || counted(e) != tc.wantCount[i] {
					t.Errorf("line %d: %q count %d, want %q count %d", i, e.Message, counted(e), tc.want[i], tc.wantCount[i])
				}
				wantLevel := zapcore.WarnLevel
				if e.Message == "over: ended" {
					wantLevel = zapcore.InfoLevel
				}
				if e.Level != wantLevel {
					t.Errorf("line %d at %s, want %s", i, e.Level, wantLevel)
				}
			}
		})
	}
}

func TestOptionsWithDefaults(t *testing.T) {
	tests := []struct {
		name      string
		got, want any
	}{
		{"interval", Options{}.WithDefaults().Interval, DefaultInterval},
		{"interval negative", Options{Interval: -1}.WithDefaults().Interval, DefaultInterval},
		{"interval set", Options{Interval: time.Second}.WithDefaults().Interval, time.Second},
		{"clock", Options{}.WithDefaults().Now != nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("WithDefaults() gave %v, want %v", tc.got, tc.want)
			}
		})
	}
}
