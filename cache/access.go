package cache

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// accessLog batches last-access times in memory, so that a cache hit costs
// no write; they reach meta.db every flush interval and at Close.
type accessLog struct {
	mu      sync.Mutex
	pending map[digest.Digest]time.Time
}

// init prepares an empty log.
func (a *accessLog) init() { a.pending = make(map[digest.Digest]time.Time) }

// touch records an access to d at t.
func (a *accessLog) touch(d digest.Digest, t time.Time) {
	a.mu.Lock()
	a.pending[d] = t
	a.mu.Unlock()
}

// forget drops a pending access to d.
func (a *accessLog) forget(d digest.Digest) {
	a.mu.Lock()
	delete(a.pending, d)
	a.mu.Unlock()
}

// get returns the pending access to d, if any.
func (a *accessLog) get(d digest.Digest) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.pending[d]
	return t, ok
}

// take returns and clears the pending accesses.
func (a *accessLog) take() map[digest.Digest]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pending
	a.pending = make(map[digest.Digest]time.Time, len(p))
	return p
}

// flushAccessLoop writes pending access times every interval until the
// store closes (Close writes the last ones).
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

// flushAccess writes the pending access times in one transaction. An
// object stored without metadata gets a record with the size of its file;
// an access to an object that is gone is dropped.
func (s *Store) flushAccess() error {
	pending := s.access.take()
	if len(pending) == 0 {
		return nil
	}
	var adopted []int64 // sizes of files that had no record
	err := s.db.Update(func(tx *bolt.Tx) error {
		adopted = adopted[:0]
		b := tx.Bucket(objectsBucket)
		for d, at := range pending {
			var m objectMeta
			v := b.Get([]byte(d))
			if v == nil || json.Unmarshal(v, &m) != nil {
				path, err := s.blobPath(d)
				if err != nil {
					continue
				}
				fi, err := os.Stat(path)
				if err != nil {
					continue
				}
				m = objectMeta{Size: fi.Size()}
				if v == nil {
					adopted = append(adopted, fi.Size())
				}
			}
			m.LastAccess = at.UnixNano()
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(d), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing %d last-access times: %w", len(pending), err)
	}
	for _, size := range adopted {
		s.added(size)
	}
	return nil
}

// LastAccess returns when d was last read, as far as
// meta.db and the pending accesses know.
func (s *Store) LastAccess(d digest.Digest) (time.Time, bool) {
	if t, ok := s.access.get(d); ok {
		return t, true
	}
	if !s.enter() {
		return time.Time{}, false
	}
	defer s.leave()
	if m, ok := s.readObjectMeta(d); ok && m.lastAccess() > 0 {
		return time.Unix(0, m.lastAccess()), true
	}
	return time.Time{}, false
}
