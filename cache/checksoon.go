package cache

import (
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
)

// checkQueueSize bounds the objects waiting for a check soon; beyond it,
// requests are dropped (the scrub gets to them).
const checkQueueSize = 1024

// checkQueue holds the objects to check in the background soon: stored
// blobs read in part (ranges) before they were verified since the start.
type checkQueue struct {
	ch chan digest.Digest
	// queued dedups the requests; under integrity.mu.
	queued map[digest.Digest]struct{}
}

// startCheckQueue starts the worker that checks queued objects at rate
// bytes per second (<= 0: unbounded).
func (s *Store) startCheckQueue(rate int64) {
	s.integ.soon = checkQueue{ch: make(chan digest.Digest, checkQueueSize), queued: make(map[digest.Digest]struct{})}
	s.wg.Add(1)
	go s.checkQueueLoop(rate)
}

// CheckSoon asks for d to be hashed in the background, at the scrub's
// rate, unless it was verified since the store opened or is already
// waiting: a reader that sends only part of an unverified blob (a range)
// cannot check it itself. A corrupt object is then removed, logged and
// counted. It does nothing when the scrub is off.
func (s *Store) CheckSoon(d digest.Digest) {
	s.integ.mu.Lock()
	if s.integ.soon.ch == nil {
		s.integ.mu.Unlock()
		return
	}
	if _, ok := s.integ.verified[d]; ok {
		s.integ.mu.Unlock()
		return
	}
	if _, ok := s.integ.soon.queued[d]; ok {
		s.integ.mu.Unlock()
		return
	}
	select {
	case s.integ.soon.ch <- d:
		s.integ.soon.queued[d] = struct{}{}
	default:
	}
	s.integ.mu.Unlock()
}

// checkQueueLoop checks the queued objects one at a time until the store
// closes. The pacer lives across objects, so a burst of ranged reads does
// not read faster than rate.
func (s *Store) checkQueueLoop(rate int64) {
	defer s.wg.Done()
	p := newPacer(rate)
	for {
		select {
		case <-s.ctx.Done():
			return
		case d := <-s.integ.soon.ch:
			start := time.Now()
			_, size, err := s.checkEntered(s.ctx, d, p, true, "read in part")
			s.integ.mu.Lock()
			delete(s.integ.soon.queued, d)
			s.integ.mu.Unlock()
			if err != nil && s.ctx.Err() == nil && !errors.Is(err, ErrNotFound) {
				s.log.Error("checking a cached object", zap.String("digest", d.String()), zap.Error(err))
			}
			if c := s.log.Check(zap.DebugLevel, "object checked after a partial read"); c != nil {
				c.Write(zap.String("digest", d.String()), zap.Int64("bytes", size), zap.Duration("duration", time.Since(start)))
			}
		}
	}
}
