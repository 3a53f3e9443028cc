package upstream

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
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

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, value string
		want        time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"spaces", " 30 ", 30 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"huge", "999999999999", maxRetryAfter},
		{"far date", now.Add(48 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
		{"garbage", "soon", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseRetryAfter(tc.value, now); got != tc.want {
				t.Errorf("parseRetryAfter(%q) = %s, want %s", tc.value, got, tc.want)
			}
		})
	}
}

// budgetEvent is an answer noted by a budget, at an offset from the start.
type budgetEvent struct {
	at         time.Duration
	status     int
	remaining  string // ratelimit-remaining; "": no rate-limit headers
	retryAfter string
}

func TestBudgetDecide(t *testing.T) {
	const probe = time.Minute
	tests := []struct {
		name    string
		reserve int
		events  []budgetEvent
		at      time.Duration // when decide is asked
		want    budgetVerdict
		retry   time.Duration // RetryAfter of a hold
	}{
		{"nothing reported", 0, nil, 0, budgetAllow, 0},
		{"budget left", 0, []budgetEvent{{0, 200, "5", ""}}, time.Second, budgetAllow, 0},
		{"spent", 0, []budgetEvent{{0, 200, "0", ""}}, time.Second, budgetHold, probe - time.Second},
		{"down to the reserve", 3, []budgetEvent{{0, 200, "3", ""}}, 0, budgetHold, probe},
		{"above the reserve", 3, []budgetEvent{{0, 200, "4", ""}}, 0, budgetAllow, 0},
		{"probe after the interval", 0, []budgetEvent{{0, 200, "0", ""}}, probe, budgetProbe, 0},
		{"newer report lifts the hold", 0, []budgetEvent{{0, 200, "0", ""}, {time.Second, 200, "2", ""}}, 2 * time.Second, budgetAllow, 0},
		{"newer spent report restarts the hold", 0, []budgetEvent{{0, 200, "0", ""}, {30 * time.Second, 200, "0", ""}}, 80 * time.Second, budgetHold, 10 * time.Second},
		{"answer without headers changes nothing", 0, []budgetEvent{{0, 200, "0", ""}, {time.Second, 200, "", ""}}, 2 * time.Second, budgetHold, probe - 2*time.Second},
		{"429 without headers", 0, []budgetEvent{{0, 429, "", ""}}, 0, budgetHold, probe},
		{"429 with a short Retry-After", 0, []budgetEvent{{0, 429, "", "7"}}, 0, budgetHold, probe},
		{"429 with a long Retry-After", 0, []budgetEvent{{0, 429, "", "300"}}, 2 * probe, budgetHold, 300*time.Second - 2*probe},
		{"429 despite reported budget", 0, []budgetEvent{{0, 429, "9", ""}}, 0, budgetHold, probe},
		{"404 with budget", 0, []budgetEvent{{0, 200, "0", ""}, {time.Second, 404, "1", ""}}, 2 * time.Second, budgetAllow, 0},
	}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &budget{reserve: tc.reserve, probe: probe}
			for _, ev := range tc.events {
				h := http.Header{}
				if ev.remaining != "" {
					h.Set("Ratelimit-Limit", "100;w=21600")
					h.Set("Ratelimit-Remaining", ev.remaining+";w=21600")
				}
				if ev.retryAfter != "" {
					h.Set("Retry-After", ev.retryAfter)
				}
				b.note(ev.status, h, start.Add(ev.at))
			}
			got, _, held := b.decide(start.Add(tc.at), "hub")
			if got != tc.want {
				t.Fatalf("decide = %d, want %d", got, tc.want)
			}
			if got == budgetHold && (held == nil || held.RetryAfter != tc.retry || !errors.Is(held, ErrBudgetHeld)) {
				t.Errorf("held = %+v, want RetryAfter %s wrapping ErrBudgetHeld", held, tc.retry)
			}
		})
	}
}

func TestBudgetHoldIsLoggedOncePerExhaustion(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := &budget{probe: time.Minute}
	spent := http.Header{"Ratelimit-Limit": {"10"}, "Ratelimit-Remaining": {"0"}}
	left := http.Header{"Ratelimit-Limit": {"10"}, "Ratelimit-Remaining": {"4"}}
	steps := []struct {
		note      http.Header // noted before deciding; nil: none
		wantFirst bool
	}{
		{spent, true},
		{nil, false},
		{spent, false}, // still the same exhaustion
		{left, false},  // not held: no error at all
		{spent, true},  // a new exhaustion
		{nil, false},
	}
	for i, s := range steps {
		if s.note != nil {
			b.note(http.StatusOK, s.note, start)
		}
		v, _, held := b.decide(start, "hub")
		if s.note != nil && s.note.Get("Ratelimit-Remaining") != "0" {
			if v != budgetAllow {
				t.Fatalf("step %d: verdict %d with budget left", i, v)
			}
			continue
		}
		if v != budgetHold || held.First != s.wantFirst {
			t.Errorf("step %d: verdict %d, held %+v; want a hold with First %v", i, v, held, s.wantFirst)
		}
	}
}

// budgetRegistry is a registry without auth that reports a settable pull
// budget on manifest answers and counts manifest GETs and HEADs.
type budgetRegistry struct {
	srv         *httptest.Server
	gets, heads atomic.Int64
	mu          sync.Mutex
	status      int    // answer status; 0: 200
	remaining   string // ratelimit-remaining; "": no rate-limit headers
	retryAfter  string
}

func newBudgetRegistry(t *testing.T) *budgetRegistry {
	r := &budgetRegistry{remaining: "10"}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodHead {
			r.heads.Add(1)
		} else {
			r.gets.Add(1)
		}
		r.mu.Lock()
		status, remaining, retryAfter := r.status, r.remaining, r.retryAfter
		r.mu.Unlock()
		if remaining != "" {
			w.Header().Set("Ratelimit-Limit", "10;w=21600")
			w.Header().Set("Ratelimit-Remaining", remaining+";w=21600")
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		if status == 0 {
			status = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if req.Method == http.MethodGet && status == http.StatusOK {
			_, _ = io.WriteString(w, manifestBody)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// set changes the answers under the lock.
func (r *budgetRegistry) set(status int, remaining, retryAfter string) {
	r.mu.Lock()
	r.status, r.remaining, r.retryAfter = status, remaining, retryAfter
	r.mu.Unlock()
}

func TestMayGet(t *testing.T) {
	reg := newBudgetRegistry(t)
	clk := newClock()
	c := mustNew(t, Config{Name: "hub", Endpoints: []string{reg.srv.URL}}, Options{Now: clk.Now, RateLimitReserve: 1})
	req := Request{Method: http.MethodGet, Repository: "library/alpine", Path: "manifests/3"}
	getOnce := func() error {
		t.Helper()
		if err := c.MayGet(t.Context(), req); err != nil {
			return err
		}
		_, err := fetch(t, c, t.Context(), req)
		return err
	}
	counts := func(step string, gets, heads int64) {
		t.Helper()
		if g, h := reg.gets.Load(), reg.heads.Load(); g != gets || h != heads {
			t.Errorf("%s: upstream saw %d GETs and %d HEADs, want %d and %d", step, g, h, gets, heads)
		}
	}

	reg.set(0, "1", "") // this GET leaves 1: the reserve
	if err := getOnce(); err != nil {
		t.Fatalf("GET with budget left: %v", err)
	}
	var held *HeldError
	if err := c.MayGet(t.Context(), req); !errors.As(err, &held) || !held.First || held.Remaining != 1 || held.Reserve != 1 {
		t.Fatalf("MayGet at the reserve = %v, want the first *HeldError", err)
	}
	if b := c.Budget(); !b.Held || b.Remaining != 1 || b.Limit != 10 || b.Reserve != 1 || !b.HeldUntil.Equal(clk.Now().Add(DefaultBudgetProbe)) {
		t.Errorf("Budget() = %+v, want held for %s", b, DefaultBudgetProbe)
	}
	if err := c.MayGet(t.Context(), req); !errors.As(err, &held) || held.First {
		t.Errorf("second MayGet = %v, want a *HeldError that is not the first", err)
	}
	counts("while held", 1, 0)

	// Past the probe interval, one HEAD asks; it still reports the reserve.
	clk.Add(DefaultBudgetProbe)
	if err := c.MayGet(t.Context(), req); !errors.Is(err, ErrBudgetHeld) {
		t.Errorf("MayGet after a probe at the reserve = %v, want ErrBudgetHeld", err)
	}
	counts("after a spent probe", 1, 1)

	// A HEAD (a revalidation, say) that reports budget ends the hold at once.
	reg.set(0, "6", "")
	if _, err := fetch(t, c, t.Context(), Request{Method: http.MethodHead, Repository: "library/alpine", Path: "manifests/3"}); err != nil {
		t.Fatal(err)
	}
	if err := c.MayGet(t.Context(), req); err != nil {
		t.Errorf("MayGet after a report of budget = %v, want nil", err)
	}
	counts("after a HEAD with budget", 1, 2)

	// A 429 holds for its Retry-After when longer than the probe interval.
	reg.set(http.StatusTooManyRequests, "", "300")
	if err := getOnce(); err == nil {
		t.Fatal("GET answered 429 succeeded")
	}
	clk.Add(DefaultBudgetProbe + time.Second)
	if err := c.MayGet(t.Context(), req); !errors.As(err, &held) || held.RetryAfter != 300*time.Second-DefaultBudgetProbe-time.Second {
		t.Errorf("MayGet within Retry-After = %v, want held for the rest of it", err)
	}
	if rl, ok := c.RateLimit(); !ok || rl.Remaining != 0 || rl.Limit != 10 {
		t.Errorf("RateLimit() after a 429 = %+v, %v; want 0 of 10 left", rl, ok)
	}
	counts("after a 429", 2, 2)

	// The probe's 404 is the answer: no GET follows.
	clk.Add(300 * time.Second)
	reg.set(http.StatusNotFound, "", "")
	var ue *Error
	if err := c.MayGet(t.Context(), req); !errors.As(err, &ue) || ue.Status != http.StatusNotFound {
		t.Errorf("MayGet with a probe answered 404 = %v, want the 404", err)
	}
	counts("after a 404 probe", 2, 3)

	// A probe answered without rate-limit headers lifts the hold: nothing
	// says the budget is still spent.
	reg.set(http.StatusTooManyRequests, "", "")
	if err := getOnce(); err == nil {
		t.Fatal("GET answered 429 succeeded")
	}
	clk.Add(DefaultBudgetProbe)
	reg.set(0, "", "")
	if err := c.MayGet(t.Context(), req); err != nil {
		t.Errorf("MayGet with a probe that reported nothing = %v, want nil", err)
	}
	counts("after a silent probe", 3, 4)
}

func TestMayGetProbesOnceForConcurrentCallers(t *testing.T) {
	reg := newBudgetRegistry(t)
	clk := newClock()
	c := mustNew(t, Config{Name: "hub", Endpoints: []string{reg.srv.URL}}, Options{Now: clk.Now})
	req := Request{Method: http.MethodGet, Repository: "library/alpine", Path: "manifests/3"}
	reg.set(0, "0", "")
	if _, err := fetch(t, c, t.Context(), req); err != nil {
		t.Fatal(err)
	}
	clk.Add(DefaultBudgetProbe)
	const callers = 8
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() { errs <- c.MayGet(t.Context(), req) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrBudgetHeld) {
			t.Errorf("MayGet = %v, want ErrBudgetHeld", err)
		}
	}
	if h := reg.heads.Load(); h != 1 {
		t.Errorf("%d callers sent %d probes, want 1", callers, h)
	}
}
