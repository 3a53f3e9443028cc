package schedule

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/mirror"
)

// ErrUnknownRule means no rule has the name given to Run.
var ErrUnknownRule = errors.New("no such sync rule")

// Source is what a sync needs of the mirror (*mirror.Mirror has it).
type Source interface {
	// ListTags lists a repository's tags at its upstream.
	ListTags(ctx context.Context, repository string) ([]string, error)
	// Sync brings an image into the cache through the mirror's pull path,
	// asking the upstream about its tag, and returns the digests of its
	// manifests and blobs for the platforms.
	Sync(ctx context.Context, image string, platforms []string, progress func(mirror.WarmProgress)) ([]digest.Digest, error)
	// CachedTags lists the tags of a repository the cache has records of.
	CachedTags(repository string) ([]string, error)
	// CachedImage returns the cached digests of an image, without asking
	// the upstream.
	CachedImage(image string) ([]digest.Digest, error)
}

// Pinner keeps objects in the cache (*cache.Store has it).
type Pinner interface {
	// Pin replaces the objects owner keeps; none releases them.
	Pin(owner string, ds []digest.Digest)
}

// DefaultOwner prefixes the pin owners of a scheduler when Config.Owner is
// empty.
const DefaultOwner = "sync"

// Config configures a Scheduler.
type Config struct {
	// Rules are the sync rules. They must pass Check.
	Rules []Rule
	// Source is the mirror. Required.
	Source Source
	// Pins is the cache that keeps what the rules hold. Required.
	Pins Pinner
	// Owner prefixes the pin owners of this scheduler's rules, so that the
	// schedulers of two configs of one cache (during a reload) keep their
	// own pins. Default: DefaultOwner.
	Owner string
	// BeforeRun is called before every run (to apply the cache's budget
	// once the handler serves, say). Default: none.
	BeforeRun func()
	// Logger receives the scheduler's logs. Default: a no-op logger.
	Logger *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, n) for spreading runs. Default:
	// math/rand/v2's Int64N.
	Jitter func(n int64) int64
}

// WithDefaults returns c with the default of every field left zero filled
// in, its rules' too (see Rule.WithDefaults): the values New runs with.
// BeforeRun has none. The rules are copied, never changed in place.
func (c Config) WithDefaults() Config {
	if c.Owner == "" {
		c.Owner = DefaultOwner
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Jitter == nil {
		c.Jitter = rand.Int64N
	}
	rules := make([]Rule, len(c.Rules))
	for i, r := range c.Rules {
		rules[i] = r.WithDefaults()
	}
	c.Rules = rules
	return c
}

// Result is the outcome of a rule's last run.
type Result string

// The results of a run.
const (
	// ResultNever: the rule has not run yet.
	ResultNever Result = ""
	// ResultOK: every chosen image is in the cache.
	ResultOK Result = "ok"
	// ResultPaused: the upstream's pull budget is spent (a 429, or the
	// rate_limit_reserve held a manifest GET back); the next run resumes.
	ResultPaused Result = "paused"
	// ResultFailed: the tag list or some images failed otherwise.
	ResultFailed Result = "failed"
)

// Status is what a rule did last and will do next.
type Status struct {
	// Rule is the rule's name.
	Rule string `json:"rule"`
	// Running is true while the rule runs.
	Running bool `json:"running,omitempty"`
	// LastRun is when the last run started; zero before the first.
	LastRun time.Time `json:"last_run,omitzero"`
	// LastDuration is how long it took.
	LastDuration time.Duration `json:"last_duration,omitempty"`
	// Result is its outcome, Message says more (the error, the pause).
	Result  Result `json:"result,omitempty"`
	Message string `json:"message,omitempty"`
	// NextRun is when the rule runs next.
	NextRun time.Time `json:"next_run"`
	// Images is the number of images the rule keeps; Updated those of the
	// last run whose blobs had to be fetched (new or moved, unless the
	// new manifest only names blobs the cache had).
	Images  int `json:"images"`
	Updated int `json:"updated"`
	// LastBytes are the blob bytes the last run fetched from the upstream;
	// TotalBytes those of every run since the scheduler started.
	LastBytes  int64 `json:"last_bytes"`
	TotalBytes int64 `json:"total_bytes"`
	// Pinned is the number of objects (manifests and blobs) the rule pins.
	Pinned int `json:"pinned"`
	// Runs counts the runs by result since the scheduler started.
	Runs map[Result]int64 `json:"runs"`
}

// Progress is one line of a run's progress: an image's, or the rule's
// final status.
type Progress struct {
	// Rule is the rule's name.
	Rule string `json:"rule"`
	mirror.WarmProgress
	// Finished is the rule's status once its run ended.
	Finished *Status `json:"finished,omitempty"`
}

// rule is a rule and its state.
type rule struct {
	Rule
	sel   *Selector // nil: one image
	owner string
	run   sync.Mutex // held while the rule runs

	mu     sync.Mutex // guards status
	status Status
}

// Scheduler runs sync rules on their schedules and on demand.
type Scheduler struct {
	cfg   Config
	rules []*rule
	log   *zap.Logger
	wake  chan struct{}

	// pinMu orders every Pin of the rules' owners with the release when
	// the scheduler stops: once stopped, nothing is pinned again (a run
	// started by name on its own context may outlive the scheduler).
	pinMu   sync.Mutex
	stopped bool
}

// New returns a scheduler of cfg's rules, each due first a minute from now
// plus a random part of a tenth of its interval (at most five minutes).
func New(cfg Config) (*Scheduler, error) {
	if cfg.Source == nil || cfg.Pins == nil {
		return nil, errors.New("schedule: a source and a cache are required")
	}
	if err := Check(cfg.Rules); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	s := &Scheduler{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}
	now := cfg.Now()
	for _, r := range cfg.Rules {
		sel, _ := r.check()
		first := firstDelay + s.jitter(min(r.Every/10, maxFirstJitter))
		s.rules = append(s.rules, &rule{Rule: r, sel: sel, owner: cfg.Owner + " " + r.Name,
			status: Status{Rule: r.Name, NextRun: now.Add(first), Runs: map[Result]int64{}}})
	}
	return s, nil
}

// jitter returns a random duration in [0, d).
func (s *Scheduler) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(s.cfg.Jitter(int64(d)))
}

// next returns when a rule that ran at now runs again: its interval,
// give or take a tenth.
func (s *Scheduler) next(r *rule, now time.Time) time.Time {
	spread := r.Every / 10
	return now.Add(r.Every - spread + s.jitter(2*spread))
}

// Start pins what the rules keep as the cache knows it (before any run,
// so that a restart does not leave it to eviction), then runs the rules
// as they fall due until ctx ends, when it releases the pins.
func (s *Scheduler) Start(ctx context.Context) {
	for _, r := range s.rules {
		s.pinCached(r)
	}
	go func() {
		defer s.unpinAll()
		for {
			wait := time.Until(s.nextDue()) // a real timer: the loop runs on real time
			timer := time.NewTimer(max(wait, 0))
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-s.wake:
				timer.Stop()
			case <-timer.C:
				s.RunDue(ctx)
			}
		}
	}()
}

// nextDue returns the earliest next run of any rule; far ahead when there
// are none.
func (s *Scheduler) nextDue() time.Time {
	next := s.cfg.Now().Add(24 * time.Hour)
	for _, r := range s.rules {
		r.mu.Lock()
		if r.status.NextRun.Before(next) {
			next = r.status.NextRun
		}
		r.mu.Unlock()
	}
	return next
}

// unpinAll releases every rule's pins, for good: the scheduler is
// stopped.
func (s *Scheduler) unpinAll() {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	s.stopped = true
	for _, r := range s.rules {
		s.cfg.Pins.Pin(r.owner, nil)
	}
}

// pin replaces the objects r keeps, unless the scheduler has stopped; it
// reports whether it did.
func (s *Scheduler) pin(r *rule, ds []digest.Digest) bool {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	if s.stopped {
		return false
	}
	s.cfg.Pins.Pin(r.owner, ds)
	return true
}

// pinCached pins the images a rule keeps among the tags the cache has
// records of, every platform's content.
func (s *Scheduler) pinCached(r *rule) {
	repo, image := r.repository()
	images := []string{image}
	if image == "" {
		tags, err := s.cfg.Source.CachedTags(repo)
		if err != nil {
			s.log.Error("reading the cached tags of a sync rule", zap.String("rule", r.Name), zap.Error(err))
			return
		}
		images = images[:0]
		for _, tag := range r.sel.Select(tags) {
			images = append(images, repo+":"+tag)
		}
	}
	var pins []digest.Digest
	for _, img := range images {
		ds, err := s.cfg.Source.CachedImage(img)
		if err == nil {
			pins = append(pins, ds...)
		}
	}
	if !s.pin(r, pins) {
		return
	}
	r.mu.Lock()
	r.status.Pinned = countDistinct(pins)
	r.status.Images = len(images)
	r.mu.Unlock()
}

// RunDue runs, one after the other, the rules whose next run is due.
func (s *Scheduler) RunDue(ctx context.Context) {
	for _, r := range s.rules {
		r.mu.Lock()
		due := !r.status.NextRun.After(s.cfg.Now())
		r.mu.Unlock()
		if due && ctx.Err() == nil {
			s.runRule(ctx, r, nil)
		}
	}
}

// Run runs the rule of that name now (after its run in progress, if any)
// and returns its status; progress, when not nil, sees every image's
// progress and the final status. The rule's schedule starts over from
// this run.
func (s *Scheduler) Run(ctx context.Context, name string, progress func(Progress)) (Status, error) {
	for _, r := range s.rules {
		if r.Name == name {
			st := s.runRule(ctx, r, progress)
			select {
			case s.wake <- struct{}{}:
			default:
			}
			return st, nil
		}
	}
	return Status{}, fmt.Errorf("%w: %q", ErrUnknownRule, name)
}

// Rules returns the names of the rules, in their order.
func (s *Scheduler) Rules() []string {
	names := make([]string, len(s.rules))
	for i, r := range s.rules {
		names[i] = r.Name
	}
	return names
}

// Status returns the status of every rule, in their order.
func (s *Scheduler) Status() []Status {
	out := make([]Status, 0, len(s.rules))
	for _, r := range s.rules {
		out = append(out, r.snapshot())
	}
	return out
}

// snapshot copies the rule's status.
func (r *rule) snapshot() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.Runs = make(map[Result]int64, len(r.status.Runs))
	for k, v := range r.status.Runs {
		st.Runs[k] = v
	}
	return st
}

// countDistinct counts the distinct digests of ds.
func countDistinct(ds []digest.Digest) int {
	seen := make(map[digest.Digest]struct{}, len(ds))
	for _, d := range ds {
		seen[d] = struct{}{}
	}
	return len(seen)
}
