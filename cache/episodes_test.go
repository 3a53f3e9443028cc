package cache

import (
	"io"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestOverBudgetLoggedOncePerEpisode: a cache that stays over its budget
// because every object is being read logs that once when it begins and
// once, with the count of eviction passes, when it ends: not once per pass.
func TestOverBudgetLoggedOncePerEpisode(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := openTestWith(t, Options{Dir: t.TempDir(), Logger: zap.New(core)})
	var readers []*Reader
	for i := range 4 {
		data, d := seeded(4096, byte(i))
		if err := s.Put(d, "application/octet-stream", data); err != nil {
			t.Fatal(err)
		}
		r, err := s.Open(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	s.SetMaxBytes(4096)
	const passes = 1000
	for range passes {
		if err := s.evict(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range readers {
		_ = r.Close()
	}
	if err := s.evict(); err != nil {
		t.Fatal(err)
	}
	lines := logs.FilterMessageSnippet("cache over budget").AllUntimed()
	if len(lines) > 2 {
		t.Fatalf("%d lines about the cache over budget, want at most 2: %v", len(lines), lines)
	}
	last := lines[len(lines)-1]
	if n, _ := last.ContextMap()["count"].(int64); n < passes || last.Message != "cache over budget: what remains is being read, filled or pinned by sync rules: ended" {
		t.Errorf("last line %q with count %d, want the end of the episode with a count of at least %d", last.Message, n, passes)
	}
}

// TestFailedFillsLoggedOncePerEpisode: a flaky upstream whose bodies do
// not verify fails many fills, and the cache says so in one Warn line.
func TestFailedFillsLoggedOncePerEpisode(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := openTestWith(t, Options{Dir: t.TempDir(), Logger: zap.New(core)})
	const fills = 100
	for i := range fills {
		_, d := seeded(4096, byte(i))
		wrong, _ := seeded(4096, byte(i+1))
		r, err := s.Fill(t.Context(), d, fetchOf(wrong, 4096, nil))
		if err == nil {
			_, err = io.ReadAll(r)
			if werr := r.Wait(t.Context()); err == nil {
				err = werr
			}
			r.Close()
		}
		if err == nil {
			t.Fatalf("fill %d of a wrong body succeeded", i)
		}
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessage("fill failed").Len(); n != 1 {
		t.Errorf("%d Warn lines for %d failed fills, want 1", n, fills)
	}
}
