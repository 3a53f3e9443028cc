package cache

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// ErrUnwritable means the cache cannot store content now: the disk is full
// or refuses writes. The caller serves from the upstream without storing;
// the store tries writing again after Options.WriteRetryInterval.
var ErrUnwritable = errors.New("cache disk is full or unwritable")

// evictLowWater is the share of the budget eviction brings the cache down
// to, so that it does not run again for every new object.
const evictLowWater = 0.95

// Stats are the store's figures at one moment.
type Stats struct {
	// Objects is the number of stored objects.
	Objects int64
	// UsedBytes is the size of the stored objects.
	UsedBytes int64
	// ReservedBytes is the announced size of fills in progress.
	ReservedBytes int64
	// BudgetBytes is the disk budget (Options.MaxBytes); 0 means none.
	BudgetBytes int64
	// Evictions is the number of objects evicted since Open to keep
	// within the budget.
	Evictions int64
	// IdleEvictions is the number of objects evicted since Open for
	// going unread longer than max_idle.
	IdleEvictions int64
	// MaxIdle is the idle limit (Options.MaxIdle); 0 means none.
	MaxIdle time.Duration
	// PinnedObjects is the number of objects sync rules pin now.
	PinnedObjects int
	// EvictedBytes is the size of the objects evicted since Open, for the
	// budget or for max_idle.
	EvictedBytes int64
	// NotStored counts verified contents served without being stored
	// (disk full or unwritable, or larger than the budget).
	NotStored int64
	// WriteFailures counts writes that failed because the disk was full or
	// unwritable.
	WriteFailures int64
	// Unwritable reports whether the store is currently not writing.
	Unwritable bool
	// Fills is the number of fills in progress.
	Fills int
	// FillReaders is the number of readers attached to those fills.
	FillReaders int
	// FillResumes counts the attempts of fills that continued a broken
	// download from its last byte, since Open.
	FillResumes int64
	// FillRestarts counts the fills that started over from the first byte
	// (an upstream that ignored or botched a range), since Open.
	FillRestarts int64
	// FillSplits counts the fills fetched in several ranges at once,
	// since Open.
	FillSplits int64
	// SourceSwitches counts the times a fill turned to another source of
	// its content (another added source, or the next endpoint of its own)
	// after the one it used failed, stalled or was slow, since Open.
	SourceSwitches int64
	// Prefetches counts the fills started by Prefetch, since Open.
	Prefetches int64
	// PartialsContinued counts the fills that continued a partial download
	// an earlier fill left, since Open.
	PartialsContinued int64
}

// Stats returns the store's current figures.
func (s *Store) Stats() Stats {
	fills, readers := s.FillStats()
	return Stats{
		Objects:       s.objects.Load(),
		UsedBytes:     s.used.Load(),
		ReservedBytes: s.reserved.Load(),
		BudgetBytes:   s.maxBytes.Load(),
		Evictions:     s.evictions.Load(),
		IdleEvictions: s.idleEvictions.Load(),
		MaxIdle:       time.Duration(s.maxIdle.Load()),
		PinnedObjects: s.PinnedObjects(),
		EvictedBytes:  s.evictedBytes.Load(),
		NotStored:     s.notStored.Load(),
		WriteFailures: s.writeFailures.Load(),
		Unwritable:    s.unwritableUntil.Load() > s.now().UnixNano(),
		Fills:         fills,
		FillReaders:   readers,

		FillResumes:       s.fillResumes.Load(),
		FillRestarts:      s.fillRestarts.Load(),
		PartialsContinued: s.partialsContinued.Load(),
		FillSplits:        s.fillSplits.Load(),
		Prefetches:        s.prefetches.Load(),
		SourceSwitches:    s.sourceSwitches.Load(),
	}
}

// isDiskFull reports whether a write error means the disk cannot take
// writes now (full, over quota, read-only, or permission denied), as
// opposed to a fault of the content being written.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission)
}

// resumeFreeBytes is the free space that ends a disk-full pause early.
const resumeFreeBytes = 1 << 20

// writable reports whether the store may try a write now: it is not in
// the pause that follows a disk-full error, the pause is over, or (looked
// at once a second at most) the file system has room again.
func (s *Store) writable() bool {
	until := s.unwritableUntil.Load()
	if until == 0 {
		return true
	}
	now := s.now().UnixNano()
	if until <= now {
		return true
	}
	last := s.spaceChecked.Load()
	if now-last < int64(time.Second) || !s.spaceChecked.CompareAndSwap(last, now) {
		return false
	}
	free, ok := freeBytes(s.dir)
	return ok && free >= resumeFreeBytes
}

// noteWriteError records a failed write. When the disk is full or
// unwritable, writes pause for the retry interval (logged at Error when
// the pause begins) and the returned error wraps ErrUnwritable.
func (s *Store) noteWriteError(what string, err error) error {
	if !isDiskFull(err) {
		return err
	}
	s.writeFailures.Add(1)
	now := s.now()
	prev := s.unwritableUntil.Swap(now.Add(s.writeRetry).UnixNano())
	if prev == 0 {
		// Logged once per episode: a successful write ends it.
		s.log.Error("cache disk is full or unwritable: serving from the upstream without storing",
			zap.String("storage", s.dir), zap.String("operation", what),
			zap.Duration("retry_in", s.writeRetry), zap.Error(err))
	}
	if prev == 0 || prev <= now.UnixNano() {
		// Make room if the cache itself is what filled the disk: at the
		// start of the episode and after every retry that failed again.
		s.triggerEvict()
	}
	return fmt.Errorf("%w: %w", ErrUnwritable, err)
}

// noteWriteOK records a successful write, ending a disk-full pause.
func (s *Store) noteWriteOK() {
	if s.unwritableUntil.Swap(0) != 0 {
		s.log.Info("cache disk writable again", zap.String("storage", s.dir))
	}
}

// added accounts for a newly stored object and evicts if the budget is
// exceeded.
func (s *Store) added(size int64) {
	s.objects.Add(1)
	s.used.Add(size)
	s.triggerEvictIfOver()
}

// removed accounts for a removed object.
func (s *Store) removed(size int64) {
	s.objects.Add(-1)
	s.used.Add(-size)
}

// reserve accounts for a fill of the given size in progress; release
// undoes it.
func (s *Store) reserve(size int64) {
	if size > 0 {
		s.reserved.Add(size)
		s.triggerEvictIfOver()
	}
}

// release ends a reservation made by reserve.
func (s *Store) release(size int64) {
	if size > 0 {
		s.reserved.Add(-size)
	}
}

// fitsBudget reports whether an object of size may be stored at all.
func (s *Store) fitsBudget(size int64) bool {
	budget := s.maxBytes.Load()
	return budget <= 0 || size <= budget
}

// triggerEvictIfOver wakes the evictor when the stored and reserved bytes
// exceed the budget.
func (s *Store) triggerEvictIfOver() {
	if budget := s.maxBytes.Load(); budget > 0 && s.used.Load()+s.reserved.Load() > budget {
		s.triggerEvict()
	}
}

// triggerEvict wakes the evictor without waiting for it.
func (s *Store) triggerEvict() {
	select {
	case s.evictWake <- struct{}{}:
	default:
	}
}

// evictLoop runs eviction passes when woken, until the store closes.
func (s *Store) evictLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.evictWake:
			if err := s.evict(); err != nil {
				s.log.Error("evicting from the cache", zap.Error(err))
			}
		}
	}
}

// candidate is an object eviction may remove.
type candidate struct {
	d          digest.Digest
	size       int64
	lastAccess int64 // Unix nanoseconds
	manifest   bool
}

// evict removes least recently used objects until the stored and reserved
// bytes are under the low-water mark of the budget (and, while the disk is
// full, a tenth below what is stored). Objects being read or
// filled are never removed. Blobs go before manifests: a manifest is what
// makes its blobs reachable, and a pull touches them together, so an
// image's blobs are evicted before the manifest that names them, and a
// later pull of it refills the missing blobs.
func (s *Store) evict() error {
	budget := s.maxBytes.Load()
	if budget <= 0 {
		return nil
	}
	target := int64(float64(budget) * evictLowWater)
	// Not writable(): the failed download is gone by now and the free
	// space it took looks available again.
	if s.unwritableUntil.Load() > s.now().UnixNano() {
		// The disk filled up before the budget did: give back a tenth of
		// the cache, in case the cache is what filled it.
		target = min(target, s.used.Load()-s.used.Load()/10)
	} else if s.used.Load()+s.reserved.Load() <= budget {
		s.overBudget.End(zap.Int64("budget_bytes", budget))
		return nil
	}
	if !s.enter() {
		return nil
	}
	defer s.leave()
	cands, err := s.candidates()
	if err != nil {
		return err
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if a.manifest != b.manifest {
			if a.manifest {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.lastAccess, b.lastAccess), cmp.Compare(a.d, b.d))
	})
	var n, bytes int64
	for _, c := range cands {
		if s.used.Load()+s.reserved.Load() <= target {
			break
		}
		if s.busy(c.d) || s.pinned(c.d) {
			continue
		}
		size, err := s.remove(c.d)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("evicting %s: %w", c.d, err)
		}
		n++
		bytes += size
		s.evictions.Add(1)
		s.evictedBytes.Add(size)
	}
	if n > 0 {
		s.log.Debug("evicted from the cache", zap.Int64("objects", n), zap.Int64("bytes", bytes),
			zap.Int64("used_bytes", s.used.Load()), zap.Int64("budget_bytes", budget))
	}
	if over := s.used.Load() + s.reserved.Load() - budget; over > 0 {
		// Logged once per episode, with a count, not once per pass.
		s.overBudget.Event(zap.Int64("over_bytes", over), zap.Int64("budget_bytes", budget))
	} else {
		s.overBudget.End(zap.Int64("budget_bytes", budget))
	}
	return nil
}

// candidates lists every stored object with its last access, the pending
// accesses in memory taking precedence over meta.db.
func (s *Store) candidates() ([]candidate, error) {
	var cands []candidate
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(objectsBucket).ForEach(func(k, v []byte) error {
			var m objectMeta
			if json.Unmarshal(v, &m) != nil {
				return nil
			}
			d := digest.Digest(k)
			c := candidate{d: d, size: m.Size, lastAccess: m.lastAccess(), manifest: isManifestType(m.MediaType)}
			if at, ok := s.access.get(d); ok {
				c.lastAccess = at.UnixNano()
			}
			cands = append(cands, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing objects: %w", err)
	}
	return cands, nil
}

// isManifestType reports whether a recorded media type is a manifest's
// (blobs are recorded as application/octet-stream).
func isManifestType(mt string) bool {
	return strings.Contains(mt, "manifest") || strings.Contains(mt, "index")
}

// use marks d as being read; the returned function ends it. Eviction
// leaves objects in use alone.
func (s *Store) use(d digest.Digest) func() {
	s.useMu.Lock()
	s.inUse[d]++
	s.useMu.Unlock()
	return func() {
		s.useMu.Lock()
		if s.inUse[d]--; s.inUse[d] <= 0 {
			delete(s.inUse, d)
		}
		s.useMu.Unlock()
	}
}

// busy reports whether d is being read or filled.
func (s *Store) busy(d digest.Digest) bool {
	s.useMu.Lock()
	n := s.inUse[d]
	s.useMu.Unlock()
	if n > 0 {
		return true
	}
	s.mu.Lock()
	_, filling := s.fills[d]
	s.mu.Unlock()
	return filling
}

// loadUsage sums the sizes recorded in meta.db: the starting point of the
// budget, before reconcile corrects it against the disk.
func (s *Store) loadUsage() error {
	var objects, used int64
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(objectsBucket).ForEach(func(_, v []byte) error {
			var m objectMeta
			if json.Unmarshal(v, &m) == nil {
				objects++
				used += m.Size
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("reading cache usage: %w", err)
	}
	s.objects.Store(objects)
	s.used.Store(used)
	return nil
}

// reconcile brings meta.db in line with blobs/ after a start: records of
// files that are gone (a crash between writing a record and renaming its
// file, or between removing a file and its record) are dropped, and files
// without a record get one. It runs in the background while the store
// serves; the disk is the truth meanwhile.
func (s *Store) reconcile() {
	defer s.wg.Done()
	start := s.now()
	dropped, adopted, err := s.reconcileOnce()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("reconciling cache metadata with the disk", zap.Error(err))
		}
		return
	}
	if dropped > 0 || adopted > 0 {
		s.log.Info("reconciled cache metadata with the disk", zap.Int("dropped_records", dropped),
			zap.Int("adopted_files", adopted), zap.Duration("duration", s.now().Sub(start)))
	}
	s.triggerEvictIfOver()
}

// reconcileOnce does the work of reconcile and reports the records it
// dropped and the files it adopted.
func (s *Store) reconcileOnce() (dropped, adopted int, err error) {
	if !s.enter() {
		return 0, 0, ErrClosed
	}
	defer s.leave()
	// Records whose file is missing.
	var ghosts []digest.Digest
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(objectsBucket).ForEach(func(k, _ []byte) error {
			if s.ctx.Err() != nil {
				return s.ctx.Err()
			}
			d := digest.Digest(k)
			path, perr := s.blobPath(d)
			if perr != nil {
				ghosts = append(ghosts, d)
				return nil
			}
			if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
				ghosts = append(ghosts, d)
			}
			return nil
		})
	})
	if err != nil {
		return 0, 0, err
	}
	for _, d := range ghosts {
		if s.busy(d) {
			continue // a fill is committing it right now
		}
		var size int64
		var gone bool
		s.removeMu.Lock()
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(objectsBucket)
			v := b.Get([]byte(d))
			if v == nil {
				return nil
			}
			if path, perr := s.blobPath(d); perr == nil {
				if _, serr := os.Stat(path); serr == nil {
					return nil // committed since
				}
			}
			var m objectMeta
			_ = json.Unmarshal(v, &m)
			size, gone = m.Size, true
			if err := b.Delete([]byte(d)); err != nil {
				return err
			}
			// Like any removal: what is kept about the object goes with it.
			if dep := s.dependent; dep != nil {
				return dep.Forget(tx, d)
			}
			return nil
		})
		s.removeMu.Unlock()
		if err != nil {
			return dropped, adopted, fmt.Errorf("dropping the record of %s: %w", d, err)
		}
		if gone {
			s.removed(size)
			dropped++
		}
	}
	// Files without a record.
	err = filepath.WalkDir(s.blobsDir, func(path string, e fs.DirEntry, werr error) error {
		if werr != nil {
			return werr
		}
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(s.blobsDir, path)
		alg, enc, ok := strings.Cut(filepath.ToSlash(rel), "/")
		if !ok {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
		if d.Validate() != nil {
			return nil
		}
		if _, ok := s.readObjectMeta(d); ok {
			return nil
		}
		fi, ierr := e.Info()
		if ierr != nil {
			return nil
		}
		var created bool
		uerr := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(objectsBucket)
			if b.Get([]byte(d)) != nil {
				return nil
			}
			v, merr := json.Marshal(objectMeta{Size: fi.Size(), LastAccess: fi.ModTime().UnixNano()})
			if merr != nil {
				return merr
			}
			created = true
			return b.Put([]byte(d), v)
		})
		if uerr != nil {
			return fmt.Errorf("recording %s: %w", d, uerr)
		}
		if created {
			s.added(fi.Size())
			adopted++
		}
		return nil
	})
	return dropped, adopted, err
}

// startBackground starts the store's background work: the access flusher,
// the ingest sweeper, the evictor, the idle evictor and the reconciliation
// of metadata with the disk.
func (s *Store) startBackground(flushEvery time.Duration) {
	s.wg.Add(5)
	go s.sweepIngestLoop()
	go s.flushAccessLoop(flushEvery)
	go s.evictLoop()
	go s.idleLoop()
	go s.reconcile()
}

// SetMaxBytes changes the disk budget (a config reload that keeps the open
// store), evicting at once when the stored objects exceed the new one.
// Zero or less: no budget.
func (s *Store) SetMaxBytes(n int64) {
	s.maxBytes.Store(n)
	s.triggerEvictIfOver()
}
