package mirror

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// noteHeld counts a manifest GET the pull budget held back and logs the
// first of each exhaustion of the budget at Warn; the others are counted
// only. err is what upstream.Client.MayGet returned.
func (m *Mirror) noteHeld(t target, ref string, err error) {
	var he *upstream.HeldError
	if !errors.As(err, &he) {
		return
	}
	m.stats.rateLimitHolds.Add(1)
	if he.First {
		m.log.Warn("holding back manifest requests: the upstream pull budget is spent",
			zap.String("upstream", t.registry), zap.String("repository", t.repo),
			zap.String("reference", ref), zap.Int("remaining", he.Remaining),
			zap.Int("reserve", he.Reserve), zap.Duration("retry_after", he.RetryAfter))
	}
}

// heldToOCI is the answer to a request that only a held-back GET could
// have answered: 429 TOOMANYREQUESTS with the hold's Retry-After.
func heldToOCI(he *upstream.HeldError) *oci.Error {
	e := oci.Errorf(http.StatusTooManyRequests, oci.CodeTooManyRequests,
		"the pull rate limit of the upstream registry %s is spent; this mirror answers from its cache only", he.Upstream)
	e.RetryAfter = retryAfterSeconds(he.RetryAfter)
	return e
}

// retryAfterSeconds formats d as a Retry-After value: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}
