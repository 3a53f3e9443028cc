package cache

import (
	"cmp"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
)

// Idle check intervals: a pass of idle eviction runs every hundredth of
// max_idle, within these bounds.
const (
	minIdleCheck = time.Minute
	maxIdleCheck = time.Hour
)

// Pin keeps ds in the cache while owner holds them: neither the budget
// (max_size) nor max_idle evicts a pinned object. A later Pin of the same
// owner replaces its set; an empty set (or Unpin) releases it. Purge and
// Delete still remove pinned objects.
func (s *Store) Pin(owner string, ds []digest.Digest) {
	set := make(map[digest.Digest]struct{}, len(ds))
	for _, d := range ds {
		set[d] = struct{}{}
	}
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	if len(set) == 0 {
		delete(s.pins, owner)
		return
	}
	s.pins[owner] = set
}

// Unpin releases every object owner pinned.
func (s *Store) Unpin(owner string) { s.Pin(owner, nil) }

// pinned reports whether any owner pins d.
func (s *Store) pinned(d digest.Digest) bool {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	for _, set := range s.pins {
		if _, ok := set[d]; ok {
			return true
		}
	}
	return false
}

// SetMaxIdle sets how long an object may go unread before idle eviction
// removes it (a config reload that keeps the open store). Zero or less:
// objects are never evicted for age.
func (s *Store) SetMaxIdle(d time.Duration) {
	if s.maxIdle.Swap(int64(d)) != int64(d) {
		// The check interval follows max_idle.
		select {
		case s.idleWake <- struct{}{}:
		default:
		}
	}
}

// idleCheckEvery is the interval of idle eviction passes for maxIdle.
func idleCheckEvery(maxIdle time.Duration) time.Duration {
	return min(max(maxIdle/100, minIdleCheck), maxIdleCheck)
}

// idleLoop runs EvictIdle every idleCheckEvery while max_idle is set,
// until the store closes.
func (s *Store) idleLoop() {
	defer s.wg.Done()
	for {
		every := maxIdleCheck
		if idle := time.Duration(s.maxIdle.Load()); idle > 0 {
			every = idleCheckEvery(idle)
		}
		timer := time.NewTimer(every)
		select {
		case <-s.ctx.Done():
			timer.Stop()
			return
		case <-s.idleWake:
			timer.Stop()
		case <-timer.C:
			if _, err := s.EvictIdle(); err != nil && s.ctx.Err() == nil {
				s.log.Error("evicting idle content from the cache", zap.Error(err))
			}
		}
	}
}

// IdleEviction is what one pass of idle eviction removed.
type IdleEviction struct {
	// Objects and Bytes are the manifests and blobs removed.
	Objects int64
	Bytes   int64
	// Tags are the tag records removed because their manifest is gone.
	Tags int
}

// EvictIdle removes, now, the objects nobody read for longer than
// max_idle (SetMaxIdle) that are neither pinned, being read, nor being
// filled, and then the tag records whose manifest is no longer stored (a
// tag no client used for that long). Objects of unknown last access are
// kept. It does nothing without max_idle; the store runs it by itself
// every hundredth of max_idle (at least every minute, at most every
// hour).
func (s *Store) EvictIdle() (IdleEviction, error) {
	idle := time.Duration(s.maxIdle.Load())
	if idle <= 0 {
		return IdleEviction{}, nil
	}
	res, err := s.evictIdleObjects(s.now().Add(-idle).UnixNano())
	if err == nil {
		if dep := s.dependent; dep != nil {
			res.Tags, err = dep.Prune(s.storedOrBusy)
		}
	}
	if res.Objects > 0 || res.Tags > 0 {
		s.log.Info("evicted content unused for max_idle", zap.Int64("objects", res.Objects),
			zap.Int64("bytes", res.Bytes), zap.Int("tags", res.Tags), zap.Duration("max_idle", idle))
	}
	return res, err
}

// evictIdleObjects removes the objects last read before cutoff (Unix
// nanoseconds) that are neither pinned, read nor filled.
func (s *Store) evictIdleObjects(cutoff int64) (IdleEviction, error) {
	var res IdleEviction
	if !s.enter() {
		return res, ErrClosed
	}
	defer s.leave()
	cands, err := s.candidates()
	if err != nil {
		return res, err
	}
	for _, c := range cands {
		if c.lastAccess == 0 || c.lastAccess >= cutoff || s.busy(c.d) || s.pinned(c.d) {
			continue
		}
		size, err := s.remove(c.d)
		if err != nil {
			continue // gone meanwhile, or removed next time
		}
		res.Objects++
		res.Bytes += size
		s.idleEvictions.Add(1)
		s.evictedBytes.Add(size)
	}
	return res, nil
}

// Entry is a stored object as Oldest reports it.
type Entry struct {
	// Digest identifies the object.
	Digest digest.Digest `json:"digest"`
	// Size is its length in bytes.
	Size int64 `json:"size"`
	// Manifest is true for a manifest, false for a blob.
	Manifest bool `json:"manifest"`
	// LastAccess is its last read; zero when unknown.
	LastAccess time.Time `json:"last_access,omitzero"`
	// Pinned is true while a sync rule keeps it.
	Pinned bool `json:"pinned"`
}

// Oldest returns the n stored objects read least recently, oldest first:
// the next ones max_idle and the budget evict, unless pinned.
func (s *Store) Oldest(n int) ([]Entry, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	cands, err := s.candidates()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.lastAccess, b.lastAccess), cmp.Compare(a.d, b.d))
	})
	out := make([]Entry, 0, min(n, len(cands)))
	for _, c := range cands[:min(n, len(cands))] {
		e := Entry{Digest: c.d, Size: c.size, Manifest: c.manifest, Pinned: s.pinned(c.d)}
		if c.lastAccess > 0 {
			e.LastAccess = time.Unix(0, c.lastAccess)
		}
		out = append(out, e)
	}
	return out, nil
}

// PinnedObjects returns the number of distinct objects pinned now.
func (s *Store) PinnedObjects() int {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	seen := map[digest.Digest]struct{}{}
	for _, set := range s.pins {
		for d := range set {
			seen[d] = struct{}{}
		}
	}
	return len(seen)
}
