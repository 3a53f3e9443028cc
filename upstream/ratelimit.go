package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultBudgetProbe is how long requests that count against the pull
// budget are held back after the upstream reported the budget spent, when
// Options.BudgetProbe is zero.
const DefaultBudgetProbe = time.Minute

// maxRetryAfter caps the hold a Retry-After header may ask for: Docker
// Hub's window is six hours, and a longer hold would only hide a bad value.
const maxRetryAfter = 6 * time.Hour

// ErrBudgetHeld means a request that counts against the upstream's pull
// budget was not sent, because the budget is spent (or down to its
// reserve). Errors wrapping it are *HeldError.
var ErrBudgetHeld = errors.New("pull budget spent: request held back")

// RateLimit is a pull budget as Docker Hub reports it
// ("ratelimit-limit: 100;w=21600", "ratelimit-remaining: 76;w=21600").
type RateLimit struct {
	// Limit is the number of pulls allowed per window.
	Limit int
	// Remaining is the number of pulls left in the window.
	Remaining int
	// Window is the length of the window; zero when not reported.
	Window time.Duration
	// Seen is when the budget was reported (set by the client).
	Seen time.Time
}

// ParseRateLimit reads the ratelimit-limit and ratelimit-remaining headers.
func ParseRateLimit(h http.Header) (RateLimit, bool) {
	limit, lw, ok1 := parseRateValue(h.Get("Ratelimit-Limit"))
	remaining, rw, ok2 := parseRateValue(h.Get("Ratelimit-Remaining"))
	if !ok1 || !ok2 {
		return RateLimit{}, false
	}
	w := lw
	if w == 0 {
		w = rw
	}
	return RateLimit{Limit: limit, Remaining: remaining, Window: w}, true
}

// parseRateValue reads "N" or "N;w=SECONDS".
func parseRateValue(v string) (n int, window time.Duration, ok bool) {
	num, params, _ := strings.Cut(strings.TrimSpace(v), ";")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 0 {
		return 0, 0, false
	}
	for p := range strings.SplitSeq(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if k == "w" {
			if secs, err := strconv.Atoi(val); err == nil && secs > 0 {
				window = time.Duration(secs) * time.Second
			}
		}
	}
	return n, window, true
}

// parseRetryAfter reads a Retry-After value, in seconds or as an HTTP date,
// as a wait from now: zero when absent, invalid or past, at most
// maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// Budget is what a client knows of its upstream's pull budget, for metrics
// and the admin API. The budget is the upstream's as a whole: the last
// answer of any of its endpoints that reported one sets it.
type Budget struct {
	// RateLimit is the last budget reported, by rate-limit headers or by a
	// 429 answer (which reports Remaining 0, and keeps Limit and Window of
	// the report before). Its Seen is zero when no answer reported any.
	RateLimit
	// Reserve is the number of pulls left unspent (Options.RateLimitReserve).
	Reserve int
	// Held reports whether requests that count against the budget are
	// held back now.
	Held bool
	// HeldUntil is when the hold ends at the latest (an answer reporting
	// budget above the reserve ends it sooner); zero when not held.
	HeldUntil time.Time
}

// HeldError is the error of a request held back by MayGet. Its text never
// carries credentials.
type HeldError struct {
	// Upstream is the registry's name.
	Upstream string
	// Remaining is the budget last reported (0 after a 429).
	Remaining int
	// Reserve is the configured reserve.
	Reserve int
	// RetryAfter is how long the hold lasts at most.
	RetryAfter time.Duration
	// First is true for the first request held back since the budget was
	// last known to be available: the one worth logging.
	First bool
}

// Error implements error.
func (e *HeldError) Error() string {
	return fmt.Sprintf("upstream %s: %s: %d pulls left, %d kept in reserve, retry in %s",
		e.Upstream, ErrBudgetHeld, e.Remaining, e.Reserve, e.RetryAfter.Round(time.Second))
}

// Unwrap returns ErrBudgetHeld.
func (e *HeldError) Unwrap() error { return ErrBudgetHeld }

// budgetVerdict is what budget.decide says of a counted request.
type budgetVerdict int

const (
	// budgetAllow: send it.
	budgetAllow budgetVerdict = iota
	// budgetHold: do not send it.
	budgetHold
	// budgetProbe: the hold expired; learn the budget with a request that
	// does not count (a HEAD) before sending it.
	budgetProbe
)

// budget tracks the pull budget an upstream reports and decides whether a
// request that counts against it may be sent. The zero value, with reserve
// and probe set, is ready.
type budget struct {
	reserve int
	probe   time.Duration

	mu        sync.Mutex
	rl        RateLimit
	reported  bool
	heldUntil time.Time // zero: not held
	warned    bool      // the current hold has had its First request
}

// note records what a registry answer says of the budget: its rate-limit
// headers, or a 429 (a spent budget). Budget at or below the reserve holds
// counted requests for the probe interval, or for the 429's Retry-After
// when later; budget above it ends a hold at once.
func (b *budget) note(status int, h http.Header, now time.Time) {
	rl, ok := ParseRateLimit(h)
	tooMany := status == http.StatusTooManyRequests
	if !ok && !tooMany {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.rl = rl
	}
	if tooMany {
		b.rl.Remaining = 0
	}
	b.rl.Seen = now
	b.reported = true
	if !tooMany && b.rl.Remaining > b.reserve {
		b.heldUntil = time.Time{}
		b.warned = false
		return
	}
	until := now.Add(b.probe)
	if tooMany {
		if ra := now.Add(parseRetryAfter(h.Get("Retry-After"), now)); ra.After(until) {
			until = ra
		}
	}
	if until.After(b.heldUntil) {
		b.heldUntil = until
	}
}

// decide says whether a counted request may be sent at now. When a hold
// has expired, the first caller gets budgetProbe and the hold is extended
// by the probe interval, so that concurrent callers wait for that probe
// instead of each spending a request; claim identifies that extension for
// probed. A held request gets its *HeldError.
func (b *budget) decide(now time.Time, upstream string) (v budgetVerdict, claim time.Time, held *HeldError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.heldUntil.IsZero():
		return budgetAllow, time.Time{}, nil
	case now.Before(b.heldUntil):
		held = &HeldError{Upstream: upstream, Remaining: b.rl.Remaining, Reserve: b.reserve,
			RetryAfter: b.heldUntil.Sub(now), First: !b.warned}
		b.warned = true
		return budgetHold, time.Time{}, held
	default:
		b.heldUntil = now.Add(b.probe)
		return budgetProbe, b.heldUntil, nil
	}
}

// probed ends the hold claimed by decide when the probe's answer reported
// nothing of the budget (no rate-limit headers, no 429, or no answer at
// all): nothing says the budget is still spent, and the counted request
// itself will tell. An answer that reported has already updated the hold.
func (b *budget) probed(claim time.Time, reported bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !reported && b.heldUntil.Equal(claim) {
		b.heldUntil = time.Time{}
	}
}

// snapshot returns the budget as seen at now.
func (b *budget) snapshot(now time.Time) Budget {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := Budget{RateLimit: b.rl, Reserve: b.reserve}
	if !b.heldUntil.IsZero() && now.Before(b.heldUntil) {
		out.Held, out.HeldUntil = true, b.heldUntil
	}
	return out
}

// RateLimit returns the pull budget last reported by any registry answer
// (see Budget for the rest of what the client knows of it).
func (c *Client) RateLimit() (RateLimit, bool) {
	c.budget.mu.Lock()
	defer c.budget.mu.Unlock()
	return c.budget.rl, c.budget.reported
}

// Budget returns the client's view of the upstream's pull budget: the last
// report, the reserve, and whether counted requests are held back.
func (c *Client) Budget() Budget {
	return c.budget.snapshot(c.now())
}

// noteRateLimit records the budget a registry answer reports, if any.
func (c *Client) noteRateLimit(status int, h http.Header) {
	c.budget.note(status, h, c.now())
}

// MayGet decides whether req, a request that counts against the upstream's
// pull budget (a manifest GET on Docker Hub), may be sent now. It returns
// nil when it may, and a *HeldError (wrapping ErrBudgetHeld) while the last
// reported budget is at or below the reserve and that report is recent.
//
// A report stays recent for Options.BudgetProbe, or until the Retry-After
// of a 429 when later, or until an answer (HEADs carry the headers too)
// reports budget above the reserve. When it is no longer recent, MayGet
// sends req as a HEAD, which Docker Hub does not count, to learn the budget
// first; meanwhile concurrent callers are held back. When that HEAD is
// refused with a 4xx other than 429 (the manifest does not exist, access is
// denied), MayGet returns that *Error: the GET would be refused the same
// way.
func (c *Client) MayGet(ctx context.Context, req Request) error {
	verdict, claim, held := c.budget.decide(c.now(), c.cfg.Name)
	switch verdict {
	case budgetAllow:
		return nil
	case budgetHold:
		return held
	}
	probe := req
	probe.Method = http.MethodHead
	resp, err := c.Do(ctx, probe)
	reported := false
	var refused *Error
	if err == nil {
		_, reported = ParseRateLimit(resp.Header)
		_ = resp.Body.Close()
	} else if errors.As(err, &refused) {
		reported = refused.RateLimit != nil || refused.Status == http.StatusTooManyRequests
		if refused.Status >= 500 || refused.Status == http.StatusTooManyRequests {
			refused = nil
		}
	}
	c.budget.probed(claim, reported)
	if refused != nil {
		return refused
	}
	if verdict, _, held := c.budget.decide(c.now(), c.cfg.Name); verdict == budgetHold {
		return held
	}
	return nil
}
