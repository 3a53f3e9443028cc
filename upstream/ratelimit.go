package upstream

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

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
