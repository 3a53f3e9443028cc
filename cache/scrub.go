package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Defaults of the scrub.
const (
	// DefaultScrubInterval is how often a full scrub pass starts by
	// default: every 7 days. Silent corruption is rare; a weekly pass
	// finds it before most caches have served a damaged blob many times,
	// and the first read after a start checks what matters most sooner.
	DefaultScrubInterval = 7 * 24 * time.Hour
	// DefaultScrubRate is how fast the scrub reads by default: 50 MiB/s,
	// about 3% of one core's SHA-256 and a small share of a disk's
	// bandwidth, so serving does not notice it, while a 1 TiB cache is
	// still scrubbed in about 6 hours.
	DefaultScrubRate = 50 << 20
	// firstScrubDelay is the longest wait for the first pass of a cache
	// never scrubbed, so that a start is not slowed by it.
	firstScrubDelay = time.Hour
	// scrubBatch is how many objects a pass lists at once, and how often
	// it records where it is.
	scrubBatch = 256
	// scrubMaxSleep caps one wait of the scrub loop, which then looks at
	// the clock again.
	scrubMaxSleep = time.Hour
)

// scrubBucket holds the scrub's record in meta.db.
var scrubBucket = []byte("scrub")

// scrubKey is the record's key in scrubBucket.
var scrubKey = []byte("state")

// scrubRecord is where the scrub stands, kept in meta.db so that a pass
// resumes after a restart and the next one starts on time.
type scrubRecord struct {
	// Cursor is the last object checked by the pass in progress; empty
	// between passes.
	Cursor digest.Digest `json:"cursor,omitempty"`
	// PassStarted is when the current (or last) pass started.
	PassStarted time.Time `json:"pass_started"`
	// PassFinished is when the last complete pass finished.
	PassFinished time.Time `json:"pass_finished"`
}

// nextScrub is when the scrub should run next: at once to resume a pass
// in progress; an interval after the last pass started; or, for a cache
// never scrubbed, an interval (at most an hour) after the store opened.
func nextScrub(rec scrubRecord, opened time.Time, interval time.Duration) time.Time {
	switch {
	case rec.Cursor != "":
		return opened
	case rec.PassStarted.IsZero():
		return opened.Add(min(interval, firstScrubDelay))
	default:
		return rec.PassStarted.Add(interval)
	}
}

// ScrubStats is the background scrub's progress.
type ScrubStats struct {
	// Enabled is false when the scrub is off.
	Enabled bool
	// Interval and Rate are its settings.
	Interval time.Duration
	Rate     int64
	// Running is true during a pass.
	Running bool
	// Passes counts the passes completed since the store opened.
	Passes int64
	// CheckedObjects and CheckedBytes count what it hashed since the store
	// opened.
	CheckedObjects int64
	CheckedBytes   int64
	// LastPassStarted and LastPassFinished are from the record in meta.db;
	// zero when none.
	LastPassStarted  time.Time
	LastPassFinished time.Time
}

// scrubState is the scrub's part of the store's integrity state.
type scrubState struct {
	wake chan struct{} // nudges the loop to look at its schedule again

	mu      sync.Mutex
	figures ScrubStats
}

// stats returns a copy of the scrub's figures.
func (st *scrubState) stats() ScrubStats {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.figures
}

// update changes the figures under the lock.
func (st *scrubState) update(f func(*ScrubStats)) {
	st.mu.Lock()
	f(&st.figures)
	st.mu.Unlock()
}

// startScrub starts the background scrub unless interval is negative
// (Options.WithDefaults gave the zero values theirs).
func (s *Store) startScrub(interval time.Duration, rate int64) {
	s.integ.scrub.wake = make(chan struct{}, 1)
	if interval < 0 {
		return
	}
	s.startCheckQueue(rate)
	rec, _ := s.readScrubRecord()
	s.integ.scrub.update(func(st *ScrubStats) {
		st.Enabled, st.Interval, st.Rate = true, interval, rate
		st.LastPassStarted, st.LastPassFinished = rec.PassStarted, rec.PassFinished
	})
	s.wg.Add(1)
	// The time of the start, read here: the goroutine may run later.
	go s.scrubLoop(s.now(), interval, rate)
}

// scrubLoop runs scrub passes on their schedule until the store closes;
// opened is when the store opened.
func (s *Store) scrubLoop(opened time.Time, interval time.Duration, rate int64) {
	defer s.wg.Done()
	for {
		rec, err := s.readScrubRecord()
		if err != nil {
			s.log.Error("reading the scrub record", zap.Error(err))
		}
		if wait := nextScrub(rec, opened, interval).Sub(s.now()); wait > 0 {
			t := time.NewTimer(min(wait, scrubMaxSleep))
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-s.integ.scrub.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if err := s.scrubPass(s.ctx, rate); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Error("scrubbing the cache", zap.Error(err))
			// Not again at once: the next look at the schedule is a
			// minute away at least.
			t := time.NewTimer(time.Minute)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// wakeScrub makes the scrub loop look at its schedule again (after the
// clock moved, in tests).
func (s *Store) wakeScrub() {
	select {
	case s.integ.scrub.wake <- struct{}{}:
	default:
	}
}

// scrubPass checks every stored object, in digest order from where the
// last pass stopped, reading at most rate bytes per second (<= 0: no
// bound). Corrupt objects are removed, logged and counted. Objects being
// read are checked like any other: reading them is harmless.
func (s *Store) scrubPass(ctx context.Context, rate int64) error {
	rec, err := s.readScrubRecord()
	if err != nil {
		return err
	}
	if rec.Cursor == "" {
		rec.PassStarted = s.now()
		if err := s.writeScrubRecord(rec); err != nil {
			return err
		}
	}
	s.integ.scrub.update(func(st *ScrubStats) { st.Running, st.LastPassStarted = true, rec.PassStarted })
	defer s.integ.scrub.update(func(st *ScrubStats) { st.Running = false })
	p := newPacer(rate)
	var objects, bytes, bad int64
	for {
		batch, err := s.objectsAfter(rec.Cursor, scrubBatch)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			break
		}
		for _, d := range batch {
			corrupt, size, err := s.checkEntered(ctx, d, p, true, "scrub")
			if err != nil && !errors.Is(err, ErrNotFound) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// One unreadable object does not stop the pass.
				s.log.Error("scrubbing a cached object", zap.String("digest", d.String()), zap.Error(err))
			}
			objects++
			bytes += size
			if corrupt {
				bad++
			}
			s.integ.scrub.update(func(st *ScrubStats) { st.CheckedObjects++; st.CheckedBytes += size })
			rec.Cursor = d
		}
		if err := s.writeScrubRecord(rec); err != nil {
			return err
		}
	}
	rec.Cursor, rec.PassFinished = "", s.now()
	if err := s.writeScrubRecord(rec); err != nil {
		return err
	}
	s.integ.scrub.update(func(st *ScrubStats) { st.Passes++; st.LastPassFinished = rec.PassFinished })
	s.log.Info("scrub pass finished", zap.String("storage", s.dir), zap.Int64("objects", objects),
		zap.Int64("bytes", bytes), zap.Int64("corrupt", bad), zap.Duration("duration", rec.PassFinished.Sub(rec.PassStarted)))
	return nil
}

// checkEntered is check for callers that have not entered the store.
func (s *Store) checkEntered(ctx context.Context, d digest.Digest, p *pacer, repair bool, how string) (bool, int64, error) {
	if !s.enter() {
		return false, 0, ErrClosed
	}
	defer s.leave()
	return s.check(ctx, d, p, repair, how)
}

// objectsAfter lists up to n stored objects whose digests sort after
// cursor (from the first when empty).
func (s *Store) objectsAfter(cursor digest.Digest, n int) ([]digest.Digest, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	var out []digest.Digest
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(objectsBucket).Cursor()
		k, _ := c.Seek([]byte(cursor))
		if k != nil && cursor != "" && string(k) == string(cursor) {
			k, _ = c.Next()
		}
		for ; k != nil && len(out) < n; k, _ = c.Next() {
			out = append(out, digest.Digest(k))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing objects: %w", err)
	}
	return out, nil
}

// readScrubRecord returns the scrub's record; a zero one when none.
func (s *Store) readScrubRecord() (scrubRecord, error) {
	if !s.enter() {
		return scrubRecord{}, ErrClosed
	}
	defer s.leave()
	var rec scrubRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(scrubBucket)
		if b == nil {
			return nil
		}
		if v := b.Get(scrubKey); v != nil {
			return json.Unmarshal(v, &rec)
		}
		return nil
	})
	if err != nil {
		return scrubRecord{}, fmt.Errorf("reading the scrub record: %w", err)
	}
	return rec, nil
}

// writeScrubRecord stores the scrub's record.
func (s *Store) writeScrubRecord(rec scrubRecord) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(scrubBucket)
		if err != nil {
			return err
		}
		return b.Put(scrubKey, v)
	})
	if err != nil {
		return fmt.Errorf("writing the scrub record: %w", err)
	}
	return nil
}
