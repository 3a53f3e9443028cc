package s3tier

import (
	"errors"
	"fmt"
)

// streamState is where the bytes of a shared fill's stream come from.
type streamState int

const (
	// streamBucket reads the bucket: the chunks of the fill another node
	// runs (under its lease), else the shared copy.
	streamBucket streamState = iota
	// streamLeading reads the upstream under the fill's lease, publishing
	// what it reads in chunks and, once verified, the whole content.
	streamLeading
	// streamAlone reads the upstream without the bucket, which failed.
	streamAlone
	// streamDone has returned every byte.
	streamDone
)

// String names the state, for errors and tests.
func (s streamState) String() string {
	switch s {
	case streamBucket:
		return "bucket"
	case streamLeading:
		return "leading"
	case streamAlone:
		return "alone"
	case streamDone:
		return "done"
	}
	return fmt.Sprintf("streamState(%d)", int(s))
}

// streamEvent is what moves a stream from one state to another.
type streamEvent int

const (
	// evFollow: another node holds the fill's lease now; its chunks are
	// read.
	evFollow streamEvent = iota
	// evTakeOver: the lease was free (its holder died or failed) and the
	// stream holds it now: it reads the upstream from the start.
	evTakeOver
	// evGiveUp: the bucket failed (chunk reads in a row, the lease, or
	// the tier is down): the stream reads the upstream alone.
	evGiveUp
	// evEnd: the last byte was read.
	evEnd
)

// String names the event, for errors and tests.
func (e streamEvent) String() string {
	switch e {
	case evFollow:
		return "follow"
	case evTakeOver:
		return "take over"
	case evGiveUp:
		return "give up"
	case evEnd:
		return "end"
	}
	return fmt.Sprintf("streamEvent(%d)", int(e))
}

// errBadTransition is an event that cannot happen in a state.
var errBadTransition = errors.New("no such transition")

// next is the transition function of a stream: the state that ev leads
// to from st. A stream leaves the bucket once, for the upstream (with the
// lease or alone); reading the upstream, it only ends.
func next(st streamState, ev streamEvent) (streamState, error) {
	switch {
	case st == streamBucket && ev == evFollow:
		return streamBucket, nil
	case st == streamBucket && ev == evTakeOver:
		return streamLeading, nil
	case st == streamBucket && ev == evGiveUp:
		return streamAlone, nil
	case st != streamDone && ev == evEnd:
		return streamDone, nil
	}
	return st, fmt.Errorf("%w from %s on %s", errBadTransition, st, ev)
}
