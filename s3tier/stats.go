package s3tier

import "sync/atomic"

// Stats are the tier's figures since it was created.
type Stats struct {
	// FromBucket counts fills read from the shared copy.
	FromBucket int64
	// Followed counts fills that streamed another node's download.
	Followed int64
	// Published counts fills this node downloaded for every node.
	Published int64
	// Alone counts fills that went to the upstream without the bucket,
	// which was unreachable.
	Alone int64
	// TakeOvers counts leases of dead or stalled nodes taken over.
	TakeOvers int64
	// UploadFailures counts verified fills that could not be shared.
	UploadFailures int64
	// Unavailable reports whether the bucket is bypassed now, after it
	// was found unreachable.
	Unavailable bool
}

// counters are the tier's running figures.
type counters struct {
	fromBucket, followed, published, alone, takeOvers, uploadFailures atomic.Int64
}

// Stats returns the tier's current figures.
func (t *Tier) Stats() Stats {
	c := &t.counters
	return Stats{
		FromBucket: c.fromBucket.Load(), Followed: c.followed.Load(), Published: c.published.Load(),
		Alone: c.alone.Load(), TakeOvers: c.takeOvers.Load(), UploadFailures: c.uploadFailures.Load(),
		Unavailable: !t.Available(),
	}
}
