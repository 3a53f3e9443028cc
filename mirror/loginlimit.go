package mirror

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/regcache/regcache/oci"
)

// Defaults of the limits on credential checks (see LoginLimits).
const (
	// DefaultLoginBurst is how many credential checks a client address
	// may have refused in a row before it must wait.
	DefaultLoginBurst = 10
	// DefaultLoginInterval is how often a client address earns one more
	// check once its burst is spent: 6 a minute.
	DefaultLoginInterval = 10 * time.Second
	// DefaultLoginTotalBurst is how many refused checks all clients
	// together may make in a row.
	DefaultLoginTotalBurst = 100
	// DefaultLoginTotalInterval is how often all clients together earn one
	// more check once that burst is spent: 60 a minute.
	DefaultLoginTotalInterval = time.Second
)

// maxLoginAddresses bounds the client addresses whose checks are tracked;
// beyond it, the addresses whose allowance is whole again are forgotten
// first, then any.
const maxLoginAddresses = 10000

// LoginLimits bound the credential checks (the token endpoint, Basic
// credentials on a request) the mirror asks an upstream to make for
// credentials it has no standing verdict on, so that the mirror cannot
// serve as a password-guessing proxy. Each client address has a token
// bucket, and all clients share one: a check takes a token from both and
// an accepted check gives them back, so only refused checks (and checks
// the upstream could not answer) cost. A client without a token gets 429
// TOOMANYREQUESTS with a Retry-After, and the upstream is not asked.
type LoginLimits struct {
	// Burst is the size of each client address's bucket. Zero means
	// DefaultLoginBurst; negative turns every limit off.
	Burst int
	// Interval is how often a client address earns a token back. Zero
	// means DefaultLoginInterval.
	Interval time.Duration
	// TotalBurst is the size of the bucket all clients share. Zero means
	// DefaultLoginTotalBurst.
	TotalBurst int
	// TotalInterval is how often the shared bucket earns a token back.
	// Zero means DefaultLoginTotalInterval.
	TotalInterval time.Duration
}

// withDefaults fills the zero fields.
func (l LoginLimits) withDefaults() LoginLimits {
	if l.Burst == 0 {
		l.Burst = DefaultLoginBurst
	}
	if l.Interval <= 0 {
		l.Interval = DefaultLoginInterval
	}
	if l.TotalBurst <= 0 {
		l.TotalBurst = DefaultLoginTotalBurst
	}
	if l.TotalInterval <= 0 {
		l.TotalInterval = DefaultLoginTotalInterval
	}
	return l
}

// errLoginThrottled is the answer to a credential check over the limits.
var errLoginThrottled = errors.New("too many credential checks")

// bucket is a token bucket: tokens at the time at.
type bucket struct {
	tokens float64
	at     time.Time
}

// level returns the bucket's tokens at now, refilled one per interval up
// to burst.
func (b bucket) level(now time.Time, burst int, interval time.Duration) float64 {
	return math.Min(float64(burst), b.tokens+float64(now.Sub(b.at))/float64(interval))
}

// loginLimiter enforces LoginLimits.
type loginLimiter struct {
	limits LoginLimits
	mu     sync.Mutex
	total  bucket
	byAddr map[netip.Prefix]bucket
}

// newLoginLimiter returns a limiter with full buckets, or nil when the
// limits are off.
func newLoginLimiter(l LoginLimits, now time.Time) *loginLimiter {
	l = l.withDefaults()
	if l.Burst < 0 {
		return nil
	}
	return &loginLimiter{limits: l, total: bucket{tokens: float64(l.TotalBurst), at: now}, byAddr: map[netip.Prefix]bucket{}}
}

// take takes a token for a check by a client at addr (an invalid addr
// shares one bucket with every other such client). It returns, when there
// is none, how long until there is.
func (ll *loginLimiter) take(addr netip.Prefix, now time.Time) (wait time.Duration, ok bool) {
	if ll == nil {
		return 0, true
	}
	ll.mu.Lock()
	defer ll.mu.Unlock()
	l := ll.limits
	own, known := ll.byAddr[addr]
	if !known {
		own = bucket{tokens: float64(l.Burst), at: now}
	}
	ownLevel := own.level(now, l.Burst, l.Interval)
	totalLevel := ll.total.level(now, l.TotalBurst, l.TotalInterval)
	if ownLevel < 1 || totalLevel < 1 {
		wait = max(time.Duration((1-ownLevel)*float64(l.Interval)), time.Duration((1-totalLevel)*float64(l.TotalInterval)))
		return wait, false
	}
	if !known && len(ll.byAddr) >= maxLoginAddresses {
		ll.shrinkLocked(now)
	}
	ll.byAddr[addr] = bucket{tokens: ownLevel - 1, at: now}
	ll.total = bucket{tokens: totalLevel - 1, at: now}
	return 0, true
}

// refund gives back the token of a check the upstream accepted.
func (ll *loginLimiter) refund(addr netip.Prefix, now time.Time) {
	if ll == nil {
		return
	}
	ll.mu.Lock()
	defer ll.mu.Unlock()
	l := ll.limits
	if own, ok := ll.byAddr[addr]; ok {
		ll.byAddr[addr] = bucket{tokens: math.Min(own.level(now, l.Burst, l.Interval)+1, float64(l.Burst)), at: now}
	}
	ll.total = bucket{tokens: math.Min(ll.total.level(now, l.TotalBurst, l.TotalInterval)+1, float64(l.TotalBurst)), at: now}
}

// shrinkLocked forgets the addresses whose bucket is full again, then, if
// that is not enough, arbitrary ones down to three quarters of the bound.
func (ll *loginLimiter) shrinkLocked(now time.Time) {
	l := ll.limits
	for a, b := range ll.byAddr {
		if b.level(now, l.Burst, l.Interval) >= float64(l.Burst) {
			delete(ll.byAddr, a)
		}
	}
	for a := range ll.byAddr {
		if len(ll.byAddr) < maxLoginAddresses*3/4 {
			break
		}
		delete(ll.byAddr, a)
	}
}

// clientPrefix returns the key a client address is limited under: the
// address itself for IPv4, its /64 for IPv6 (one subscriber's network),
// and the invalid prefix when addr is not an IP address.
func clientPrefix(addr string) netip.Prefix {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// throttledLogin is the 429 answer of a client over the limits.
func throttledLogin(wait time.Duration) error {
	secs := int64(math.Ceil(wait.Seconds()))
	e := oci.Errorf(http.StatusTooManyRequests, oci.CodeTooManyRequests,
		"too many credential checks from this client: retry in %d seconds", max(secs, 1))
	e.RetryAfter = strconv.FormatInt(max(secs, 1), 10)
	return fmt.Errorf("%w: %w", errLoginThrottled, e)
}
