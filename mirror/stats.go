package mirror

import "sync/atomic"

// Stats are counters of what the mirror did since it was created, for
// metrics and the admin API.
type Stats struct {
	// StaleServes counts tag requests answered with the tag's last known
	// digest past its TTL, because the upstream could not revalidate it
	// (unreachable, timing out, answering 5xx or 429) or because the pull
	// budget held back the request that would have.
	StaleServes int64
	// RateLimitHolds counts manifest GETs not sent because the upstream's
	// pull budget was spent or down to its reserve.
	RateLimitHolds int64
	// NegativeHits counts manifest requests answered with a remembered
	// upstream 404 instead of asking the upstream again.
	NegativeHits int64
}

// statCounters are the live counters behind Stats.
type statCounters struct {
	staleServes    atomic.Int64
	rateLimitHolds atomic.Int64
	negativeHits   atomic.Int64
}

// Stats returns the mirror's counters. It is safe for concurrent use.
func (m *Mirror) Stats() Stats {
	return Stats{
		StaleServes:    m.stats.staleServes.Load(),
		RateLimitHolds: m.stats.rateLimitHolds.Load(),
		NegativeHits:   m.stats.negativeHits.Load(),
	}
}
