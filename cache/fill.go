package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// fillBufferSize is the copy buffer of a fill.
const fillBufferSize = 256 << 10

// fillBuffers recycles the copy buffers of fills.
var fillBuffers = sync.Pool{New: func() any { b := make([]byte, fillBufferSize); return &b }}

// Source is an upstream body being filled into the cache.
type Source struct {
	// Body is the content from Offset; the fill closes it.
	Body io.ReadCloser
	// Size is the expected size of the whole content, or -1 when unknown.
	Size int64
	// Offset is where Body starts in the content: the off asked for, or 0
	// when the upstream answered the whole content.
	Offset int64
	// End, when positive, is where Body stops short of the content's end
	// (a first fetch that asked for the first Store.SplitSize bytes only).
	End int64
	// Segment, when set, fetches exact ranges of the content: a fill of
	// at least Options.FillSplitSize bytes then fetches later ranges over
	// further connections while Body brings the first.
	Segment SegmentFunc
	// MediaType is recorded with the object.
	MediaType string
	// Demote, when set, is called when the fill finds Body too slow: it
	// makes the next call of the same FetchFunc go elsewhere (another
	// endpoint of the upstream) and reports whether it can; false leaves
	// everything as it was.
	Demote func(why string) bool
	// Done, when set, is called once with the fill's verdict: the verified
	// content (open for reading, closed after Done returns) and its
	// metadata, or the error that failed the fill. It runs on the fill's
	// goroutine after every reader got the verdict.
	Done func(content *os.File, obj Object, err error)
}

// FetchFunc opens the upstream body of a fill from byte off: the whole
// content when off is 0, else (asking with RangeHeader(off)) the content
// from off, which the Source's Offset confirms; an upstream that ignores
// the range answers the whole content with Offset 0, and the fill starts
// over with it. It is called with a context owned by the fill, detached
// from every client and cancelled only by Store.Close, so the fill
// completes even if all its clients leave; it is called again, with the
// offset reached, when a body breaks (see Options.FillRetries).
//
// Called with off 0 by a store that splits large fills (SplitSize > 0),
// it may ask for only the first SplitSize bytes (FirstRangeHeader) and
// mark where the body stops in Source.End: the store fetches the rest in
// ranges, and no byte is sent twice. Called with off > 0 and a context
// that carries an end (FetchEnd), it may likewise ask for only the bytes
// before that end (BoundedRangeHeader).
type FetchFunc func(ctx context.Context, off int64) (Source, error)

// fill is the one download in progress of a digest.
type fill struct {
	d       digest.Digest
	tmpPath string
	// partial is how many first bytes of the content the download file
	// held when the fill started (a previous fill's partial download),
	// and partialMeta that download's sidecar.
	partial     int64
	partialMeta partialMeta
	// extents are the ranges beyond the prefix the download file holds
	// written in full (see partialMeta.Extents): those of the partial
	// download, then those the fill's ranges reached when they stopped.
	// Only the fill's goroutine uses them.
	extents []extent
	// reserved is the budget reserved for the announced size; set before
	// ready closes.
	reserved int64

	ready     chan struct{} // closed when fetch returned
	fetchErr  error         // set before ready closes
	size      int64         // set before ready closes
	mediaType string        // set before ready closes
	// onDone is the source's Done callback; set before ready closes.
	onDone func(content *os.File, obj Object, err error)

	mu      sync.Mutex
	written int64
	// sources are further fetches of the content, by clients that joined
	// the fill (their upstream and credentials), tried when the current
	// one fails or stalls.
	sources []FetchFunc
	done    bool
	err     error         // the verdict, once done
	notify  chan struct{} // closed and replaced on every change
	readers int
}

// progress publishes n written bytes and wakes the readers.
func (f *fill) progress(n int64) {
	f.mu.Lock()
	f.written = n
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// finish publishes the verdict (nil: verified and stored) and wakes the
// readers.
func (f *fill) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// state returns what readers need, under one lock: the bytes written, the
// verdict if done, and a channel closed at the next change.
func (f *fill) state() (written int64, done bool, err error, notify <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written, f.done, f.err, f.notify
}

// isDone reports whether the verdict is published.
func (f *fill) isDone() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

// maxSources bounds the further sources a fill keeps.
const maxSources = 8

// addSource adds a further source to a fill in progress.
func (f *fill) addSource(fetch FetchFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done && len(f.sources) < maxSources {
		f.sources = append(f.sources, fetch)
	}
}

// source returns the fetch of source i: 0 is the fill's own, the others
// those added since; i wraps around.
func (f *fill) source(own FetchFunc, i int) (FetchFunc, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i %= 1 + len(f.sources)
	if i == 0 {
		return own, 0
	}
	return f.sources[i-1], i
}

// hasOtherSources reports whether sources were added.
func (f *fill) hasOtherSources() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sources) > 0
}

// sourceCount is how many sources the fill has: its own and those added.
func (f *fill) sourceCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return 1 + len(f.sources)
}

// addReaders counts readers attached to the fill.
func (f *fill) addReaders(n int) {
	f.mu.Lock()
	f.readers += n
	f.mu.Unlock()
}

// Fill returns a reader of d's content: of the stored file when d is
// present, otherwise of the one fill of d, joining the fill in progress or
// starting it with fetch. It waits until fetch has returned, so upstream
// errors come back here unchanged (errors.Is and errors.As see them), or
// until ctx ends. A caller that joined a fill whose fetch has not answered
// within Options.SlowSourceAfter gets an error wrapping ErrSlowFill: it
// may fetch the content past the cache from its own upstream. ctx bounds only this caller's waiting and reading, never
// the fill.
func (s *Store) Fill(ctx context.Context, d digest.Digest, fetch FetchFunc) (*Reader, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("filling %q: %w", d, err)
	}
	var queued <-chan time.Time
	var r *Reader
	for {
		var slotFreed <-chan struct{}
		var err error
		r, slotFreed, err = s.join(ctx, d, fetch)
		if err != nil || r != nil && r.complete {
			return r, err
		}
		if r != nil {
			break
		}
		// Every fill slot is taken: wait for one, then look again (the
		// object may have been stored or its fill started meanwhile).
		if queued == nil {
			t := time.NewTimer(s.fillQueueTimeout)
			defer t.Stop()
			queued = t.C
		}
		select {
		case <-slotFreed:
		case <-queued:
			return nil, fmt.Errorf("filling %s: %d downloads in progress: %w", d, cap(s.fillSlots), ErrBusy)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, ErrClosed
		}
	}
	fl := r.fill
	// A caller that joined a fill does not wait long on the trouble of the
	// upstream that fill asked: it may go past the cache to its own.
	var slow <-chan time.Time
	if !r.started {
		t := time.NewTimer(s.slowSource)
		defer t.Stop()
		slow = t.C
	}
	select {
	case <-fl.ready:
	case <-slow:
		_ = r.Close()
		return nil, fmt.Errorf("filling %s: the download joined has had no answer for %s: %w", d, s.slowSource, ErrSlowFill)
	case <-ctx.Done():
		_ = r.Close()
		return nil, ctx.Err()
	case <-s.ctx.Done():
		_ = r.Close()
		return nil, ErrClosed
	}
	if fl.fetchErr != nil {
		_ = r.Close()
		return nil, fl.fetchErr
	}
	r.size, r.mediaType = fl.size, fl.mediaType
	return r, nil
}

// join returns a reader of the stored d, or one attached to the fill of d,
// which it starts when there is none. When a fill must start and every
// fill slot is taken, it returns no reader and a channel closed when a
// slot frees.
func (s *Store) join(ctx context.Context, d digest.Digest, fetch FetchFunc) (*Reader, <-chan struct{}, error) {
	if !s.enter() {
		return nil, nil, ErrClosed
	}
	defer s.leave()
	f, obj, err := s.open(d)
	if err == nil {
		return s.completeReader(ctx, f, obj), nil, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fl, ok := s.fills[d]
	if ok && fl.isDone() {
		// A fill that published its verdict is on its way out: it failed,
		// and the next Fill fetches again, or it stored d (which may have
		// been deleted since).
		ok = false
	}
	if !ok {
		// The fill of d may have been stored and left since the check
		// above; a new one would download d again.
		if f, obj, err := s.open(d); err == nil {
			return s.completeReader(ctx, f, obj), nil, nil
		}
		select {
		case s.fillSlots <- struct{}{}:
		default:
			return nil, s.slotFreed, nil
		}
		if fl, err = s.startFill(d, fetch); err != nil {
			s.freeSlot()
			return nil, nil, err
		}
	}
	committed, _ := s.blobPath(d) // d is valid
	file, err := fl.open(committed)
	if err != nil {
		return nil, nil, err
	}
	fl.addReaders(1)
	return &Reader{ctx: ctx, fill: fl, file: file, size: -1, release: s.use(d), started: !ok}, nil, nil
}

// freeSlot gives a fill slot back and wakes the callers waiting for one.
// Called with s.mu held.
func (s *Store) freeSlot() {
	<-s.fillSlots
	close(s.slotFreed)
	s.slotFreed = make(chan struct{})
}

// open opens the fill's content for a new reader: the temporary file, or
// the stored one when the fill has just renamed it. Called with s.mu held,
// while the fill is registered. A fill that did not store its content
// removes its temporary file under s.mu after publishing its verdict, so
// a missing temporary file here means the fill stored the content or
// failed.
func (f *fill) open(committed string) (*os.File, error) {
	file, err := os.Open(f.tmpPath)
	if err == nil {
		return file, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("joining the fill of %s: %w", f.d, err)
	}
	if _, done, ferr, _ := f.state(); done && ferr != nil {
		return nil, ferr
	}
	// Renamed into blobs/ since; the verdict follows.
	file, err = os.Open(committed)
	if err != nil {
		return nil, fmt.Errorf("joining the fill of %s: %w", f.d, err)
	}
	return file, nil
}

// startFill registers and starts the fill of d. Called with s.mu held and
// the store entered, so Close waits for the goroutine it starts.
// While the disk is full or unwritable it returns an error wrapping
// ErrUnwritable, and the caller serves from the upstream without storing.
func (s *Store) startFill(d digest.Digest, fetch FetchFunc) (*fill, error) {
	if !s.writable() {
		s.notStored.Add(1)
		return nil, fmt.Errorf("filling %s: %w", d, ErrUnwritable)
	}
	tmp, partial, meta, err := s.openPartial(d)
	if err != nil {
		err = s.noteWriteError("creating a download file", err)
		if errors.Is(err, ErrUnwritable) {
			s.notStored.Add(1)
		}
		return nil, fmt.Errorf("filling %s: %w", d, err)
	}
	fl := &fill{d: d, tmpPath: tmp.Name(), partial: partial, partialMeta: meta, extents: meta.Extents,
		ready: make(chan struct{}), notify: make(chan struct{})}
	s.fills[d] = fl
	s.wg.Add(1)
	go s.runFill(fl, tmp, fetch)
	return fl, nil
}

// runFill downloads and verifies one fill, stores it when it may, publishes
// the verdict, then unregisters the fill. The verdict is the content's:
// verified content that cannot be stored (the disk filled up as it was
// committed) still serves its readers from the download, which is then
// dropped. Content larger than the budget fails the fill with ErrTooLarge
// before any byte is written, or once it outgrows the budget.
func (s *Store) runFill(fl *fill, tmp *os.File, fetch FetchFunc) {
	defer s.wg.Done()
	start := s.now()
	written, resumable, err := s.download(fl, tmp, fetch)
	stored, keep := false, false
	if err == nil {
		stored = s.store(fl, tmp, written)
	}
	if stored {
		_ = os.Remove(fl.tmpPath + sidecarSuffix)
	} else {
		// Before the verdict: a fill of the digest that starts once it is
		// out continues the partial download only if it was kept.
		keep = s.keepPartial(fl, tmp, written, resumable && err != nil)
	}
	s.release(fl.reserved)
	if err != nil && s.ctx.Err() != nil && !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	// The verdict first, then the file: a reader joining in between finds
	// the file, then the verdict.
	fl.finish(err)
	s.finishSource(fl, stored, err)
	switch {
	case err == nil:
		if c := s.log.Check(zapcore.DebugLevel, "fill verified"); c != nil {
			c.Write(zap.String("digest", fl.d.String()), zap.Int64("bytes", written),
				zap.Bool("stored", stored), zap.Duration("duration", s.now().Sub(start)))
		}
	case fl.fetchErr != nil:
		// The callers of Fill got this error and report it.
	case errors.Is(err, ErrClosed):
		if c := s.log.Check(zapcore.DebugLevel, "fill cancelled by close"); c != nil {
			c.Write(zap.String("digest", fl.d.String()), zap.Int64("bytes", written))
		}
	default:
		s.fillFailed.Event(zap.String("digest", fl.d.String()), zap.Int64("bytes", written), zap.Error(err))
	}
	if !stored {
		_ = tmp.Close()
	}
	s.mu.Lock()
	if s.fills[fl.d] == fl {
		// Under s.mu, so that a reader joining now either opened the file
		// already or sees the verdict. A fill of the digest that started
		// since owns the file.
		if !stored && !keep {
			removePartial(fl.tmpPath)
		}
		delete(s.fills, fl.d)
		if keep {
			s.sweepIngest(false)
		}
	}
	s.freeSlot()
	s.mu.Unlock()
}

// store commits a verified fill when the disk allows, and reports whether
// it did. A failure is logged and counted, not returned:
// the content is good, only the cache goes without it.
func (s *Store) store(fl *fill, tmp *os.File, written int64) bool {
	obj := Object{Digest: fl.d, Size: written, MediaType: fl.mediaType}
	// The object counts as stored from the commit on: its reservation ends
	// first, so that the two never count it twice.
	s.release(fl.reserved)
	fl.reserved = 0
	if err := s.commit(tmp, obj); err != nil {
		s.notStored.Add(1)
		if !errors.Is(err, ErrUnwritable) {
			s.log.Error("storing a verified fill", zap.String("digest", fl.d.String()), zap.Error(err))
		}
		return false
	}
	s.setIndex(obj, nil)
	// Hashed as it was written: its first read needs no check.
	s.markVerified(fl.d)
	return true
}

// FillStats reports the fills in flight and the readers attached to them.
func (s *Store) FillStats() (fills, readers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fl := range s.fills {
		fl.mu.Lock()
		if !fl.done {
			fills++
			readers += fl.readers
		}
		fl.mu.Unlock()
	}
	return fills, readers
}
