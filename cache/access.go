package cache

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// accessLog batches last-access times in memory, so that a cache hit
// costs no write; they reach meta.db every flush interval and at Close.
type accessLog struct {
	mu      sync.Mutex
	pending map[digest.Digest]time.Time
}

func (a *accessLog) init() { a.pending = make(map[digest.Digest]time.Time) }

// touch records an access to d at t.
func (a *accessLog) touch(d digest.Digest, t time.Time) {
	a.mu.Lock()
	a.pending[d] = t
	a.mu.Unlock()
}

// take returns and clears the pending accesses.
func (a *accessLog) take() map[digest.Digest]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pending
	a.pending = make(map[digest.Digest]time.Time, len(p))
	return p
}

// flushAccessLoop writes pending access times until the store closes.
func (s *Store) flushAccessLoop(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.flushAccess(); err != nil {
				s.log.Error("writing last-access times", zap.Error(err))
			}
		}
	}
}

// flushAccess writes the pending access times of objects that have a
// record in one transaction.
func (s *Store) flushAccess() error {
	pending := s.access.take()
	if len(pending) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(objectsBucket)
		for d, at := range pending {
			v := b.Get([]byte(d))
			if v == nil {
				continue
			}
			var m objectMeta
			if json.Unmarshal(v, &m) != nil {
				continue
			}
			m.LastAccess = at.Unix()
			nv, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(d), nv); err != nil {
				return err
			}
		}
		return nil
	})
}

// LastAccess returns when d was last read, as far as meta.db and the
// pending accesses know.
func (s *Store) LastAccess(d digest.Digest) (time.Time, bool) {
	s.access.mu.Lock()
	t, ok := s.access.pending[d]
	s.access.mu.Unlock()
	if ok {
		return t, true
	}
	if m, ok := s.readObjectMeta(d); ok && m.LastAccess > 0 {
		return time.Unix(m.LastAccess, 0), true
	}
	return time.Time{}, false
}
