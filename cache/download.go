package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// writebackChunk is how much of a download is written before the kernel
// is asked to start writing it to disk (see startWriteback).
const writebackChunk = 8 << 20

// maxRetryBackoff caps the pause between attempts of a fill.
const maxRetryBackoff = 30 * time.Second

// transfer is the state of one fill's download: the file, the hash of its
// contiguous prefix, and how far it got.
type transfer struct {
	s     *Store
	fl    *fill
	tmp   *os.File
	fetch FetchFunc
	h     hash.Hash
	// pos is how many first bytes of the content are hashed (or handed to
	// the hash pipe, which is drained before the digest is checked): the
	// offset of the next byte of the current body.
	pos int64
	// written is the contiguous prefix of the content in tmp, which
	// readers see. It is pos, or more after the fill started over from the
	// first byte: the bytes below it are then compared with the file as
	// they come again, never rewritten, so that everything a reader got is
	// covered by the digest.
	written int64
	flushed int64
	// recorded is the prefix last recorded in the sidecar by the main
	// stream while the fill is split.
	recorded int64
	// high is the longest prefix any attempt reached: an attempt that goes
	// beyond it made progress.
	high int64
	// noRanges is set once the upstream answered a range wrongly: every
	// further attempt starts from the first byte.
	noRanges bool
	// cmp is the buffer the bytes of the file are read into to compare.
	cmp []byte
	// segs are the workers fetching later ranges, nil in one stream; the
	// main stream then stops at limit.
	segs  *segments
	limit int64
	// bodyEnd is where the current body stops short of the content's
	// end (Source.End), 0 when it runs to the end.
	bodyEnd    int64
	splitTried bool
	// splitPending is set while a planned split waits for splitAt.
	splitPending bool
	splitAt      time.Time
	// segment fetches exact ranges once the fill is split: the main
	// stream continues its own range with it.
	segment SegmentFunc
	// extents are the ranges beyond the prefix that a partial download
	// kept (see partialMeta.Extents): a split fetches only the gaps
	// between them.
	extents []extent
	// source is the index of the source the next attempt uses (see
	// fill.source), tried the highest index used so far; slow is set when
	// the watchdog dropped a body that sent nothing or too slowly while
	// other sources were there, demoted when it sent the fetch of the
	// same source elsewhere (Source.Demote) to go on.
	source  int
	tried   int
	slow    atomic.Bool
	demoted atomic.Bool
	// moved counts the bytes the bodies of the main stream brought; best
	// is the best rate, in bytes per second, any of them showed over the
	// rate window, and slowSwitches how often the fill left a slow
	// source.
	moved        atomic.Int64
	best         atomic.Int64
	slowSwitches atomic.Int32
	// lastByte is when the current body last gave bytes, in Unix
	// nanoseconds.
	lastByte atomic.Int64
}

// errFirstRange ends a first body that brought only the bytes asked for.
var errFirstRange = errors.New("the first range is done")

// errBreak marks a body that broke (reset, stall, early end): the fill
// goes on from the bytes it has.
type errBreak struct{ err error }

func (e errBreak) Error() string { return e.err.Error() }
func (e errBreak) Unwrap() error { return e.err }

// download fetches the content into tmp, hashing its prefix as it grows,
// continuing with a range after a body breaks, and checks its size and
// digest. It returns the bytes written and whether what is in tmp is
// worth keeping for a later fill (the download broke off, or the store
// closed, after some bytes), and leaves tmp open for commit.
func (s *Store) download(fl *fill, tmp *os.File, fetch FetchFunc) (int64, bool, error) {
	t := &transfer{s: s, fl: fl, tmp: tmp, fetch: fetch, h: fl.d.Algorithm().Hash()}
	if fl.partial > 0 || len(fl.extents) > 0 {
		if n, err := t.hashKept(); err != nil {
			s.log.Warn("partial download unreadable; starting over", zap.String("digest", fl.d.String()), zap.Error(err))
			t.h.Reset()
			t.extents, fl.extents = nil, nil
			if err := tmp.Truncate(0); err != nil {
				return t.fail(fmt.Errorf("filling %s: emptying the download: %w", fl.d, s.noteWriteError("truncating a download", err)))
			}
		} else if n > 0 {
			t.pos, t.written, t.flushed, t.high = n, n, n, n
			s.partialsContinued.Add(1)
			if c := s.log.Check(zapcore.DebugLevel, "continuing a partial download"); c != nil {
				c.Write(zap.String("digest", fl.d.String()), zap.Int64("offset", n), zap.Int("ranges", len(t.extents)))
			}
		}
	}
	var src Source
	var err error
	switch {
	case t.pos == 0:
		src, err = s.source(fl.d, fetch)
	case t.pos == fl.partialMeta.Size:
		// Whole already (stopped before it was stored): nothing to fetch,
		// only to verify.
		src = Source{Body: io.NopCloser(bytes.NewReader(nil)), Size: t.pos, MediaType: fl.partialMeta.MediaType, Offset: t.pos}
	default:
		src, err = fetch(withFetchEnd(s.ctx, t.continueEnd()), t.pos)
	}
	if err == nil && src.Body == nil {
		err = fmt.Errorf("filling %s: the upstream returned no body", fl.d)
	}
	if err == nil && t.pos > 0 {
		err = t.accept(&src, fl.partialMeta.Size)
	}
	if err != nil {
		if s.ctx.Err() != nil && !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		fl.fetchErr = err
		close(fl.ready)
		return t.written, t.written > 0, err
	}
	if src.Size < 0 {
		src.Size = -1
	}
	if !s.fitsBudget(src.Size) {
		// Never written to disk: the caller streams it past the cache.
		_ = src.Body.Close()
		if src.Done != nil {
			src.Done(nil, Object{}, ErrTooLarge)
		}
		s.notStored.Add(1)
		fl.fetchErr = fmt.Errorf("filling %s: %d bytes exceed the cache budget: %w", fl.d, src.Size, ErrTooLarge)
		close(fl.ready)
		return 0, false, fl.fetchErr
	}
	fl.size, fl.mediaType, fl.onDone = src.Size, src.MediaType, src.Done
	if fl.mediaType == "" {
		fl.mediaType = fl.partialMeta.MediaType
	}
	if src.Size > 0 {
		fl.reserved = src.Size
		s.reserve(src.Size)
	}
	s.recordPartial(fl, t.written, len(t.extents) > 0, t.extents)
	if t.written > 0 {
		fl.progress(t.written)
	}
	close(fl.ready)
	defer t.stopSegments()
	return t.run(src)
}

// continueEnd is where the first body of a fill that continues a partial
// download should stop, 0 for the content's end: at the first range the
// partial download kept beyond its prefix (the split fetches the other
// gaps), or after a first part as a cold fill's first body does when the
// store splits large fills. A body asked to the content's end would push
// bytes the fill does not need into the connection before it is closed.
func (t *transfer) continueEnd() int64 {
	s, size := t.s, t.fl.partialMeta.Size
	switch {
	case len(t.extents) > 0:
		return t.extents[0].First
	case s.SplitSize() > 0 && size-t.pos > s.SplitSize():
		return t.pos + s.SplitSize()
	}
	return 0
}

// run copies the bodies of the fill's attempts until the content is whole,
// verified, or the attempts are spent.
func (t *transfer) run(src Source) (int64, bool, error) {
	s, fl := t.s, t.fl
	failures := 0
	// cause is the break after which the fill stopped getting further.
	var cause, err error
	for {
		if src.Body != nil {
			if t.segs == nil && t.pos == src.Offset {
				t.planSplit(src.Segment, src.End)
			}
			t.bodyEnd = src.End
			before := t.high
			err = t.copy(src)
			if err == nil && t.segs != nil {
				err = t.catchUp()
			}
			if err == nil {
				err = t.verify()
				if err == nil {
					return t.written, false, nil
				}
			}
			var brk errBreak
			if !errors.As(err, &brk) {
				return t.fail(err)
			}
			progressed := t.high > before
			if progressed {
				failures = 0
			}
			slow := t.slow.Swap(false)
			switch {
			case t.demoted.Swap(false):
				// The same fetch goes to another endpoint.
				t.slowSwitches.Add(1)
				t.switched()
			case (!progressed || slow) && fl.hasOtherSources():
				if slow {
					t.slowSwitches.Add(1)
				}
				t.nextSource()
			}
		} else if fl.hasOtherSources() {
			t.nextSource()
		}
		if failures == 0 {
			cause = err
		}
		failures++
		if s.ctx.Err() != nil {
			return t.written, t.written > 0, fmt.Errorf("filling %s: %w: %w", fl.d, ErrClosed, cause)
		}
		if failures > s.fillRetries {
			return t.written, t.written > 0, fmt.Errorf("filling %s: gave up after %d further attempts without progress (last: %w): %w",
				fl.d, failures-1, err, cause)
		}
		if c := s.log.Check(zapcore.DebugLevel, "fill interrupted; resuming"); c != nil {
			c.Write(zap.String("digest", fl.d.String()), zap.Int64("offset", t.written), zap.Int("failures", failures), zap.Error(err))
		}
		if failures > 1 && !t.pause(failures-1) {
			return t.written, t.written > 0, fmt.Errorf("filling %s: %w: %w", fl.d, ErrClosed, cause)
		}
		src, err = t.reopen()
	}
}

// reopen opens the next attempt's body from the prefix reached (or from
// the first byte once ranges proved broken).
func (t *transfer) reopen() (Source, error) {
	s, fl := t.s, t.fl
	off := t.pos
	if t.noRanges {
		off = 0
	}
	if off > 0 {
		s.fillResumes.Add(1)
	}
	var src Source
	var err error
	if t.segment != nil && t.limit > t.pos && off == t.pos {
		// The main stream's own range, no further: the workers have the
		// rest.
		var body io.ReadCloser
		body, err = t.segment(s.ctx, off, t.limit-1)
		src = Source{Body: body, Size: fl.size, MediaType: fl.mediaType, Offset: off, End: t.limit}
	} else {
		var fetch FetchFunc
		fetch, t.source = fl.source(t.fetch, t.source)
		t.tried = max(t.tried, t.source)
		src, err = fetch(s.ctx, off)
	}
	if err == nil && src.Body == nil {
		err = errors.New("the upstream returned no body")
	}
	if err == nil {
		err = t.accept(&src, fl.size)
	}
	if err != nil {
		if errors.Is(err, ErrRangeMismatch) {
			t.noRanges = true
		}
		if c := s.log.Check(zapcore.DebugLevel, "resuming a fill failed"); c != nil {
			c.Write(zap.String("digest", fl.d.String()), zap.Int64("offset", off), zap.Error(err))
		}
		return Source{}, fmt.Errorf("filling %s: continuing at byte %d: %w", fl.d, off, err)
	}
	return src, nil
}

// accept checks that src continues the content at the prefix reached: it
// starts there, or at the first byte (the fill then starts over), with the
// size known so far (size, -1 when unknown). A mismatch closes the body
// and wraps ErrRangeMismatch.
func (t *transfer) accept(src *Source, size int64) error {
	switch {
	case src.Size >= 0 && size >= 0 && src.Size != size:
		_ = src.Body.Close()
		return fmt.Errorf("filling %s: %d bytes announced, %d before: %w", t.fl.d, src.Size, size, ErrRangeMismatch)
	case src.Offset == t.pos:
		return nil
	case src.Offset == 0:
		t.noRanges = true
		t.restart()
		return nil
	default:
		_ = src.Body.Close()
		return fmt.Errorf("filling %s: a body from byte %d to continue at %d: %w", t.fl.d, src.Offset, t.pos, ErrRangeMismatch)
	}
}

// restart takes the content from its first byte again: the bytes the
// file holds are compared as they come again, then the download goes on.
// Readers see nothing of it.
func (t *transfer) restart() {
	t.s.fillRestarts.Add(1)
	t.h.Reset()
	t.pos = 0
}

// pause waits before the next attempt after failures attempts in a row
// without progress, doubling from the store's backoff; false when the
// store closes meanwhile.
func (t *transfer) pause(failures int) bool {
	return t.pauseCtx(t.s.ctx, failures)
}

// pauseCtx is pause, ended early by ctx.
func (t *transfer) pauseCtx(ctx context.Context, failures int) bool {
	wait := t.s.fillBackoff << min(failures-1, 16)
	wait = min(wait, maxRetryBackoff)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fail ends the download with err: nothing is worth keeping.
func (t *transfer) fail(err error) (int64, bool, error) {
	return t.written, false, err
}

// copy writes src's body at the prefix reached, hashing it, until it
// ends. A body that breaks or ends early returns an errBreak; content
// beyond the announced size or the budget, and a write failure, return
// other errors. It closes the body.
func (t *transfer) copy(src Source) error {
	s, fl := t.s, t.fl
	// Close unblocks a Read that ignores the context.
	stop := context.AfterFunc(s.ctx, func() { _ = src.Body.Close() })
	defer func() {
		if stop() {
			_ = src.Body.Close()
		}
	}()
	t.lastByte.Store(time.Now().UnixNano())
	done, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		t.watch(src, done, t.tried)
	}()
	defer func() {
		close(done)
		<-watched
	}()
	size := fl.size
	hp := newHashPipe(t.h, s.inlineHash)
	defer hp.close()
	for {
		buf := hp.buffer()
		want := buf
		if t.limit > 0 {
			// The workers fetch (or are about to fetch) what lies beyond.
			if t.pos >= t.limit {
				if t.endOwnRange() {
					return nil
				}
				return errBreak{fmt.Errorf("filling %s: continuing after the first %d bytes: %w", fl.d, t.pos, errFirstRange)}
			}
			want = buf[:min(int64(len(buf)), t.limit-t.pos)]
		}
		n, rerr := src.Body.Read(want)
		if n > 0 {
			t.lastByte.Store(time.Now().UnixNano())
			t.moved.Add(int64(n))
			if err := t.absorb(want[:n], size, hp); err != nil {
				return err
			}
		} else {
			hp.give(buf)
		}
		if t.splitPending && time.Now().After(t.splitAt) {
			t.startSplit()
		}
		if t.limit > 0 && t.pos >= t.limit {
			if t.endOwnRange() {
				return nil
			}
			return errBreak{fmt.Errorf("filling %s: continuing after the first %d bytes: %w", fl.d, t.pos, errFirstRange)}
		}
		if rerr == io.EOF {
			if src.End > 0 && t.pos == src.End {
				// The first range asked for; the rest follows in ranges,
				// or (without the workers) as a continuation.
				if t.endOwnRange() {
					return nil
				}
				return errBreak{fmt.Errorf("filling %s: continuing after the first %d bytes: %w", fl.d, t.pos, errFirstRange)}
			}
			if size >= 0 && t.pos < size {
				return errBreak{fmt.Errorf("filling %s: got %d of %d bytes: %w", fl.d, t.pos, size, ErrSizeMismatch)}
			}
			return nil
		}
		if rerr != nil {
			return errBreak{fmt.Errorf("filling %s: reading the upstream body after %d bytes: %w", fl.d, t.pos, rerr)}
		}
	}
}

// absorb takes the next bytes of the content, at pos: bytes the file
// holds already are compared with it (a difference fails the fill: a
// reader may have got the other bytes), the rest are written and
// published; all are handed to hp to be hashed (b is a buffer of its
// ring, which it takes; on an error it is dropped).
func (t *transfer) absorb(b []byte, size int64, hp *hashPipe) error {
	s, fl := t.s, t.fl
	if size >= 0 && t.pos+int64(len(b)) > size {
		return fmt.Errorf("filling %s: more than the %d bytes announced: %w", fl.d, size, ErrSizeMismatch)
	}
	all := b
	if t.pos < t.written {
		k := min(int64(len(b)), t.written-t.pos)
		if t.cmp == nil {
			t.cmp = make([]byte, len(b))
		}
		if int64(len(t.cmp)) < k {
			t.cmp = make([]byte, k)
		}
		if _, err := t.tmp.ReadAt(t.cmp[:k], t.pos); err != nil {
			return fmt.Errorf("filling %s: reading the download back: %w", fl.d, err)
		}
		if !bytes.Equal(t.cmp[:k], b[:k]) {
			return fmt.Errorf("filling %s: the upstream sent other bytes than before within the first %d: %w",
				fl.d, t.written, ErrDigestMismatch)
		}
		t.pos += k
		b = b[k:]
		if len(b) == 0 {
			hp.hash(all)
			return nil
		}
	}
	if !s.fitsBudget(t.pos + int64(len(b))) {
		s.notStored.Add(1)
		return fmt.Errorf("filling %s: more bytes than the cache budget: %w", fl.d, ErrTooLarge)
	}
	if _, werr := t.tmp.WriteAt(b, t.pos); werr != nil {
		return fmt.Errorf("filling %s: writing: %w", fl.d, s.noteWriteError("writing a download", werr))
	}
	t.pos += int64(len(b))
	t.written = t.pos
	t.high = max(t.high, t.pos)
	if t.written-t.flushed >= writebackChunk {
		startWriteback(t.tmp, t.flushed, t.written-t.flushed)
		t.flushed = t.written
	}
	fl.progress(t.written)
	if t.segs != nil && t.written-t.recorded >= recordEvery {
		// The workers record only as they write: the main stream's own
		// range may run on alone.
		t.record(t.segs)
		t.recorded = t.written
	}
	hp.hash(all)
	return nil
}

// verify checks the whole content's size and digest.
func (t *transfer) verify() error {
	fl := t.fl
	if t.pos != t.written || fl.size >= 0 && t.written != fl.size {
		return fmt.Errorf("filling %s: got %d of %d bytes: %w", fl.d, t.pos, max(fl.size, t.written), ErrSizeMismatch)
	}
	if got := digest.NewDigest(fl.d.Algorithm(), t.h); got != fl.d {
		return fmt.Errorf("filling %s: content hashes to %s: %w", fl.d, got, ErrDigestMismatch)
	}
	return nil
}
