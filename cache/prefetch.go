package cache

import (
	"os"

	"github.com/opencontainers/go-digest"
)

// prefetchReserve is the share of the fill slots a prefetch leaves free
// for the fills that clients wait for: a prefetch starts only while more
// than MaxFills/prefetchReserve slots (at least one) are free.
const prefetchReserve = 4

// Prefetch starts the fill of d with fetch in the background, for content
// that a client is expected to ask for soon (the layers of a manifest it
// just fetched). It never waits: it reports false, starting nothing, when
// d is stored or being filled already, or when fewer than a quarter of
// the fill slots (at least one) would stay free for fills that clients
// wait for. Clients that ask for d meanwhile join the fill.
func (s *Store) Prefetch(d digest.Digest, fetch FetchFunc) bool {
	path, err := s.blobPath(d)
	if err != nil || !s.enter() {
		return false
	}
	defer s.leave()
	if _, err := os.Stat(path); err == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fl, ok := s.fills[d]; ok && !fl.isDone() {
		return false
	}
	reserve := max(cap(s.fillSlots)/prefetchReserve, 1)
	if cap(s.fillSlots)-len(s.fillSlots) <= reserve {
		return false
	}
	s.fillSlots <- struct{}{}
	if _, err := s.startFill(d, fetch); err != nil {
		s.freeSlot()
		return false
	}
	s.prefetches.Add(1)
	return true
}
