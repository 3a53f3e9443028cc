package schedule

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/oci"
)

// fakeSource is a mirror with a tag list and a set of cached images.
type fakeSource struct {
	mu       sync.Mutex
	tags     []string
	cached   map[string]bool // images in the cache
	limited  map[string]bool // images whose sync answers 429
	lists    int
	synced   []string
	fetchTag map[string]int64
}

func (f *fakeSource) ListTags(_ context.Context, repo string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return slices.Clone(f.tags), nil
}

func (f *fakeSource) Sync(_ context.Context, image string, _ []string, progress func(mirror.WarmProgress)) ([]digest.Digest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.limited[image] {
		return nil, &mirror.PullError{Path: "/v2/x/manifests/y", Status: http.StatusTooManyRequests, Code: oci.CodeTooManyRequests, RetryAfter: 7 * time.Second}
	}
	f.synced = append(f.synced, image)
	f.cached[image] = true
	progress(mirror.WarmProgress{Image: image, FetchedBytes: f.fetchTag[image], Done: true})
	return []digest.Digest{digest.FromString(image)}, nil
}

func (f *fakeSource) CachedTags(repo string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var tags []string
	for image := range f.cached {
		if tag, ok := strings.CutPrefix(image, repo+":"); ok {
			tags = append(tags, tag)
		}
	}
	return tags, nil
}

func (f *fakeSource) CachedImage(image string) ([]digest.Digest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cached[image] {
		return []digest.Digest{digest.FromString(image)}, nil
	}
	return nil, nil
}

// fakePins records the pins of every owner.
type fakePins map[string][]digest.Digest

func (p fakePins) Pin(owner string, ds []digest.Digest) { p[owner] = ds }

// TestSchedulerRunsDueRules checks the schedule (injected clock, jitter at
// its ends), the choice of images, the pins, and a pause that the next
// run resumes.
func TestSchedulerRunsDueRules(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	src := &fakeSource{tags: []string{"3.18", "3.19", "3.20", "latest", "edge"}, cached: map[string]bool{"docker.io/library/alpine:latest": true},
		limited:  map[string]bool{"docker.io/library/alpine:3.19": true},
		fetchTag: map[string]int64{"docker.io/library/alpine:3.20": 100, "docker.io/library/alpine:latest": 50}}
	pins := fakePins{}
	jitterMax := false
	core, logs := observer.New(zapcore.DebugLevel)
	s, err := New(Config{
		Logger: zap.New(core),
		Rules:  []Rule{{Name: "docker.io/library/alpine", Tags: []string{"3.*", "latest"}, Newest: 2, Every: 6 * time.Hour}},
		Source: src, Pins: pins, Owner: "test", Now: clock,
		Jitter: func(n int64) int64 {
			if jitterMax {
				return n - 1
			}
			return 0
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Status()[0]
	if !st.NextRun.Equal(now.Add(time.Minute)) || st.Result != ResultNever {
		t.Fatalf("before the first run: %+v, want due in a minute, never run", st)
	}
	s.RunDue(t.Context())
	if src.lists != 0 {
		t.Fatal("a rule ran before its first run was due")
	}
	now = now.Add(time.Minute)

	// First run: latest (cached, so first) and 3.20 synced, then 3.19
	// answers 429: paused, 3.19 waits for the next run.
	s.RunDue(t.Context())
	st = s.Status()[0]
	if st.Result != ResultPaused || st.Runs[ResultPaused] != 1 || src.lists != 1 {
		t.Fatalf("after a 429: %+v (lists %d), want paused", st, src.lists)
	}
	if !slices.Equal(src.synced, []string{"docker.io/library/alpine:latest", "docker.io/library/alpine:3.20"}) {
		t.Errorf("synced %q, want latest and 3.20 before the pause", src.synced)
	}
	if !strings.Contains(st.Message, "429") || !strings.Contains(st.Message, "2 of 3 images") {
		t.Errorf("pause message %q, want the 429 and how far it got", st.Message)
	}
	if want := now.Add(6*time.Hour - 36*time.Minute); !st.NextRun.Equal(want) {
		t.Errorf("next run %s, want %s (the interval less a tenth, at the jitter's low end)", st.NextRun, want)
	}
	if got := pins["test docker.io/library/alpine"]; len(got) != 2 {
		t.Errorf("pins after the pause %v, want those of latest and 3.20", got)
	}
	if warned := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("paused").Len(); warned != 1 {
		t.Errorf("%d Warn lines for the pause, want 1", warned)
	}

	// Not due yet: nothing runs.
	now = now.Add(time.Hour)
	s.RunDue(t.Context())
	if src.lists != 1 {
		t.Fatalf("a rule ran before it was due")
	}

	// Due, and the budget still spent: paused again, said at Debug only.
	now = st.NextRun
	s.RunDue(t.Context())
	st = s.Status()[0]
	if st.Result != ResultPaused || st.Runs[ResultPaused] != 2 {
		t.Fatalf("second run with a 429: %+v, want paused twice", st)
	}
	if warned := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("paused").Len(); warned != 1 {
		t.Errorf("%d Warn lines after a second pause, want still 1", warned)
	}

	// Due, and the budget is back: the run completes.
	now = st.NextRun
	src.limited = nil
	jitterMax = true
	s.RunDue(t.Context())
	st = s.Status()[0]
	if st.Result != ResultOK || st.Images != 3 || st.Pinned != 3 || st.Runs[ResultOK] != 1 || st.TotalBytes != 450 {
		t.Fatalf("after the resumed run: %+v, want ok with 3 images pinned and 450 bytes in all", st)
	}
	if resumed := logs.FilterLevelExact(zapcore.InfoLevel).FilterMessageSnippet("resumed").Len(); resumed != 1 {
		t.Errorf("%d Info lines for the resumed run, want 1", resumed)
	}
	// The tags the cache has first (their HEADs report the budget), then
	// the new one.
	if want := []string{"docker.io/library/alpine:latest", "docker.io/library/alpine:3.20",
		"docker.io/library/alpine:3.20", "docker.io/library/alpine:latest",
		"docker.io/library/alpine:3.20", "docker.io/library/alpine:latest", "docker.io/library/alpine:3.19"}; !slices.Equal(src.synced, want) {
		t.Errorf("synced %q, want %q", src.synced, want)
	}
	if want := now.Add(6*time.Hour + 36*time.Minute - 1); !st.NextRun.Equal(want) {
		t.Errorf("next run %s, want %s (the jitter's high end)", st.NextRun, want)
	}

	// Run now, by name, with progress.
	var lines []Progress
	if _, err := s.Run(t.Context(), "docker.io/library/alpine", func(p Progress) { lines = append(lines, p) }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 4 || lines[3].Finished == nil || lines[3].Finished.Result != ResultOK {
		t.Errorf("progress %+v, want three images and the final status", lines)
	}
	if _, err := s.Run(t.Context(), "nope", nil); err == nil {
		t.Error("Run of an unknown rule succeeded")
	}
}

func TestCheckRules(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		ok   bool
	}{
		{"repository", Rule{Name: "docker.io/library/alpine", Tags: []string{"3.*"}}, true},
		{"image by tag", Rule{Name: "alpine:3.19", Platforms: []string{"linux/arm/v7"}}, true},
		{"image by digest", Rule{Name: "alpine@sha256:" + digest.FromString("x").Encoded()}, true},
		{"registry with a port", Rule{Name: "registry.example.com:5000/app", Newest: 2}, true},
		{"tags of one image", Rule{Name: "alpine:3.19", Tags: []string{"3.*"}}, false},
		{"too often", Rule{Name: "alpine", Every: time.Second}, false},
		{"bad platform", Rule{Name: "alpine", Platforms: []string{"amd64"}}, false},
		{"no name", Rule{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Check([]Rule{tc.rule}); (err == nil) != tc.ok {
				t.Errorf("Check(%+v) = %v, want ok %v", tc.rule, err, tc.ok)
			}
		})
	}
	if err := Check([]Rule{{Name: "alpine"}, {Name: "alpine"}}); err == nil {
		t.Error("Check accepted a rule twice")
	}
}

// TestStartPinsWhatTheCacheHas checks that a scheduler pins, before any
// run, the images its rules keep among the tags the cache has records
// of: a restart does not leave them to eviction until the first run.
func TestStartPinsWhatTheCacheHas(t *testing.T) {
	// Far ahead of the real clock: the first run is not due while the
	// test runs.
	now := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{cached: map[string]bool{
		"docker.io/library/alpine:3.19":   true,
		"docker.io/library/alpine:3.20":   true,
		"docker.io/library/alpine:edge":   true,
		"docker.io/library/other:3.20":    true,
		"docker.io/library/alpine:latest": true,
	}}
	pins := fakePins{}
	s, err := New(Config{
		Rules:  []Rule{{Name: "docker.io/library/alpine", Tags: []string{"3.*"}, Newest: 1}},
		Source: src, Pins: pins, Owner: "test", Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s.Start(ctx)
	got := pins["test docker.io/library/alpine"]
	if want := []digest.Digest{digest.FromString("docker.io/library/alpine:3.20")}; !slices.Equal(got, want) {
		t.Errorf("pins at start %v, want 3.20's only (the newest 3.x)", got)
	}
	if st := s.Status()[0]; st.Images != 1 || st.Pinned != 1 || src.lists != 0 {
		t.Errorf("status at start %+v (tag lists %d), want one image pinned and no request", st, src.lists)
	}
}

// blockingSource is a fakeSource whose Sync waits for release, after
// saying it started.
type blockingSource struct {
	*fakeSource
	started chan struct{}
	release chan struct{}
}

func (b *blockingSource) Sync(ctx context.Context, image string, platforms []string, progress func(mirror.WarmProgress)) ([]digest.Digest, error) {
	b.started <- struct{}{}
	<-b.release
	return b.fakeSource.Sync(ctx, image, platforms, progress)
}

// lockedPins records the pins of every owner and says when an owner's
// pins are released.
type lockedPins struct {
	mu       sync.Mutex
	pins     map[string][]digest.Digest
	released chan string
}

func (p *lockedPins) Pin(owner string, ds []digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pins[owner] = ds
	if ds == nil {
		p.released <- owner
	}
}

func (p *lockedPins) of(owner string) []digest.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pins[owner]
}

// TestRunAcrossStopLeavesNoPins: a run started by name (from the admin
// API, on its own context) that is still in progress when the scheduler
// stops (a reload) must not pin anything once the scheduler released its
// pins, or the old config's owner would keep them for good.
func TestRunAcrossStopLeavesNoPins(t *testing.T) {
	now := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC) // the first run is never due while the test runs
	src := &blockingSource{fakeSource: &fakeSource{tags: []string{"3.20"}, cached: map[string]bool{"docker.io/library/alpine:3.20": true}},
		started: make(chan struct{}), release: make(chan struct{})}
	pins := &lockedPins{pins: map[string][]digest.Digest{}, released: make(chan string, 4)}
	s, err := New(Config{
		Rules:  []Rule{{Name: "docker.io/library/alpine", Tags: []string{"3.*"}}},
		Source: src, Pins: pins, Owner: "old", Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	s.Start(ctx)
	if got := pins.of("old docker.io/library/alpine"); len(got) != 1 {
		t.Fatalf("pins at start %v, want those of the cached 3.20", got)
	}

	done := make(chan Status)
	go func() {
		st, err := s.Run(t.Context(), "docker.io/library/alpine", nil)
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	<-src.started
	stop()
	if owner := <-pins.released; owner != "old docker.io/library/alpine" {
		t.Fatalf("released the pins of %q", owner)
	}
	close(src.release)
	st := <-done
	if st.Result != ResultOK || st.Pinned != 0 {
		t.Errorf("the run across the stop: %+v, want ok with nothing pinned", st)
	}
	if got := pins.of("old docker.io/library/alpine"); len(got) != 0 {
		t.Errorf("pins of the stopped scheduler's rule after its run ended: %v, want none", got)
	}
}

func TestConfigWithDefaults(t *testing.T) {
	rules := []Rule{{Name: "docker.io/library/alpine"}, {Name: "docker.io/library/nginx", Every: time.Hour}}
	tests := []struct {
		name      string
		got, want any
	}{
		{"owner", Config{}.WithDefaults().Owner, DefaultOwner},
		{"owner set", Config{Owner: "sync 0x1"}.WithDefaults().Owner, "sync 0x1"},
		{"logger", Config{}.WithDefaults().Logger != nil, true},
		{"clock", Config{}.WithDefaults().Now != nil, true},
		{"jitter", Config{}.WithDefaults().Jitter != nil, true},
		{"before run: none", Config{}.WithDefaults().BeforeRun == nil, true},
		{"rule interval", Config{Rules: rules}.WithDefaults().Rules[0].Every, DefaultEvery},
		{"rule interval set", Config{Rules: rules}.WithDefaults().Rules[1].Every, time.Hour},
		{"rules copied, not changed", func() time.Duration { Config{Rules: rules}.WithDefaults(); return rules[0].Every }(), time.Duration(0)},
		{"rule", Rule{}.WithDefaults().Every, DefaultEvery},
		{"rule set", Rule{Every: 2 * time.Minute}.WithDefaults().Every, 2 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("WithDefaults() gave %v, want %v", tc.got, tc.want)
			}
		})
	}
}
