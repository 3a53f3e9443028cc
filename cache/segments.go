package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// SegmentFunc opens bytes first to last (both included) of a fill's
// content, for a fill fetched in several ranges at once. It must return
// exactly those bytes, or an error wrapping ErrRangeMismatch when the
// upstream answered anything else (the fill then goes on in one stream).
type SegmentFunc func(ctx context.Context, first, last int64) (io.ReadCloser, error)

// recordEvery is how often (in bytes written by one range) a fill
// fetched in ranges rewrites its sidecar with the prefix and the extent
// of every range, so that after a crash the next fill continues each
// range where the sidecar last saw it: the bytes written after that are
// fetched again.
const recordEvery = 1 << 20

// segment is one range of the content that a worker fetches beside the
// fill's main stream.
type segment struct {
	first, end int64        // the range: first to end, end excluded
	done       atomic.Int64 // bytes written from first
	err        error        // why the worker gave up; set before failed closes
	failed     chan struct{}
	// slow is set when the range ran far slower than its siblings and its
	// body was dropped (see watchSegments): the worker fetches the rest
	// again, from source, without counting a failure.
	slow atomic.Bool
	// source is the fill's source the worker fetches from (see
	// fill.source): 0 is the range fetch of the first body's source
	// (SegmentFunc), another the fetch of a source added to the fill.
	// Only the worker uses it.
	source int
	// mu guards body, the body being read, which the watcher closes,
	// and bodies, how many the worker opened.
	mu     sync.Mutex
	body   io.Closer
	bodies int
}

// setBody records the body the worker reads (nil when none).
func (g *segment) setBody(b io.Closer) {
	g.mu.Lock()
	g.body = b
	if b != nil {
		g.bodies++
	}
	g.mu.Unlock()
}

// current returns how many bodies the worker opened, and whether it is
// reading one.
func (g *segment) current() (bodies int, reading bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.bodies, g.body != nil
}

// drop closes the body the worker reads, marking the range slow; false
// when it has none.
func (g *segment) drop() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.body == nil {
		return false
	}
	g.slow.Store(true)
	_ = g.body.Close()
	g.body = nil
	return true
}

// segments are the workers of a fill fetched in several ranges: the main
// stream fills the first range and hashes it as it comes; the workers
// fill the others, written at their offsets, and the prefix is hashed on
// from the file as it becomes contiguous.
type segments struct {
	list   []*segment
	wake   chan struct{} // a worker wrote bytes
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// mu serializes the rewrites of the sidecar.
	mu sync.Mutex
}

// extents are the ranges' bytes written so far beyond prefix, in the
// first size bytes.
func (sg *segments) extents(prefix, size int64) []extent {
	list := make([]extent, 0, len(sg.list))
	for _, g := range sg.list {
		list = append(list, extent{First: g.first, End: g.first + g.done.Load()})
	}
	return trimExtents(list, prefix, size)
}

// record rewrites the sidecar with the prefix published to readers and
// the ranges' bytes written beyond it. Safe to call from the workers.
func (t *transfer) record(sg *segments) {
	fl := t.fl
	sg.mu.Lock()
	defer sg.mu.Unlock()
	fl.mu.Lock()
	prefix := fl.written
	fl.mu.Unlock()
	t.s.recordPartial(fl, prefix, true, sg.extents(prefix, fl.size))
}

// hashKept hashes what a partial download kept: its prefix, and the
// extents that continue it. It returns the prefix reached and leaves the
// further extents in t.extents, for the split to fetch only the gaps.
func (t *transfer) hashKept() (int64, error) {
	fl := t.fl
	pos := fl.partial
	if err := hashPrefix(t.tmp, pos, t.h); err != nil {
		return 0, err
	}
	ext := trimExtents(fl.extents, pos, max(fl.partialMeta.Size, 0))
	for len(ext) > 0 && ext[0].First == pos {
		if err := hashRange(t.tmp, pos, ext[0].End-pos, t.h); err != nil {
			return 0, err
		}
		pos, ext = ext[0].End, ext[1:]
	}
	t.extents, fl.extents = ext, ext
	return pos, nil
}

// planSplit prepares the split of a fill of at least the split size,
// when the upstream offers ranges (seg): the workers start once the main
// stream has run for the store's split delay without finishing its first
// range (end, when its body stops there) — a link that brings the first
// range sooner is fast enough that more connections would only cost CPU,
// and the fill goes on in one stream. It reports whether it planned one.
func (t *transfer) planSplit(seg SegmentFunc, end int64) bool {
	s, fl := t.s, t.fl
	if t.splitTried {
		return false
	}
	t.splitTried = true
	n := int64(s.fillConnections)
	t.extents = trimExtents(t.extents, t.pos, max(fl.size, 0))
	if seg == nil || n < 2 || fl.size < s.fillSplitSize || t.noRanges ||
		len(t.extents) == 0 && fl.size-t.pos < n*minSegment {
		return false
	}
	t.segment, t.limit, t.splitPending = seg, end, true
	t.splitAt = time.Now().Add(s.fillSplitAfter)
	if len(t.extents) > 0 {
		// A partial download kept ranges: the split starts at once (see
		// startGaps), the main stream never reading into the first.
		t.splitAt = time.Now()
		if first := t.extents[0].First; end <= t.pos || end > first {
			t.limit = first
		}
	}
	return true
}

// startSplit starts the workers of a planned split: the content from the
// main stream's position on is cut into as many ranges as the fill has
// connections, and the main stream stops at the end of the first; when
// its body stops short of the content's end (at limit), it keeps that
// range and the rest is cut into one range fewer.
func (t *transfer) startSplit() {
	s, fl := t.s, t.fl
	t.splitPending = false
	if len(t.extents) > 0 {
		t.startGaps()
		return
	}
	n := int64(s.fillConnections)
	bounds := make([]int64, n+1)
	bounds[0] = t.pos
	if t.limit > t.pos && t.limit < fl.size {
		for i := range n {
			bounds[i+1] = t.limit + (fl.size-t.limit)*i/(n-1)
		}
	} else {
		for i := range n + 1 {
			bounds[i] = t.pos + (fl.size-t.pos)*i/n
		}
	}
	if bounds[2]-bounds[1] < minSegment {
		// Too little left to be worth more connections.
		t.segment, t.limit = nil, 0
		return
	}
	sg := &segments{wake: make(chan struct{}, 1)}
	for i := int64(1); i < n; i++ {
		sg.list = append(sg.list, &segment{first: bounds[i], end: bounds[i+1], failed: make(chan struct{})})
	}
	t.launch(sg, bounds[1])
}

// startGaps starts the workers of a split that continues a partial
// download which kept ranges beyond its prefix: a worker fetches each gap
// between them, and the kept ranges are hashed from the file as the
// prefix reaches them. The main stream keeps the first gap when its body
// was asked for exactly that (FetchEnd); otherwise it stops where it is,
// as its body, asked to the content's end, would bring bytes of the kept
// ranges with it when closed later, and a worker fetches the first gap
// too.
func (t *transfer) startGaps() {
	fl := t.fl
	sg := &segments{wake: make(chan struct{}, 1)}
	limit := t.pos
	if t.bodyEnd > t.pos && t.bodyEnd <= t.extents[0].First {
		limit = t.bodyEnd
	}
	cur := limit
	add := func(first, end int64) *segment {
		g := &segment{first: first, end: end, failed: make(chan struct{})}
		sg.list = append(sg.list, g)
		return g
	}
	for _, e := range t.extents {
		if e.First > cur {
			add(cur, e.First)
		}
		add(e.First, e.End).done.Store(e.End - e.First)
		cur = e.End
	}
	if cur < fl.size {
		add(cur, fl.size)
	}
	t.extents = nil
	t.launch(sg, limit)
}

// launch records the split and starts a worker for every range of sg not
// written yet; the main stream stops at limit.
func (t *transfer) launch(sg *segments, limit int64) {
	s, fl := t.s, t.fl
	ctx, cancel := context.WithCancel(s.ctx)
	sg.cancel = cancel
	t.record(sg)
	for _, g := range sg.list {
		if g.first+g.done.Load() < g.end {
			sg.wg.Add(1)
			go t.fetchSegment(ctx, sg, g, t.segment)
		}
	}
	t.segs, t.limit = sg, limit
	if !s.paced {
		sg.wg.Add(1)
		go t.watchSegments(ctx, sg)
	}
	s.fillSplits.Add(1)
	if c := s.log.Check(zapcore.DebugLevel, "fill split into ranges"); c != nil {
		c.Write(zap.String("digest", fl.d.String()), zap.Int64("bytes", fl.size), zap.Int("ranges", len(sg.list)+1))
	}
}

// endOwnRange is called when the main stream reached its limit: with the
// workers running it is done with its range (true); otherwise the split
// never started (the link was fast), and the fill goes on in one stream
// from here (false).
func (t *transfer) endOwnRange() bool {
	if t.segs != nil {
		return true
	}
	t.splitPending, t.segment, t.limit = false, nil, 0
	return false
}

// SplitSize is the size from which fills are fetched in ranges, 0 when
// they never are (FillConnections 1, or a SourceProvider, such as a tier
// that streams each fill in one piece to every node): a FetchFunc asked for a content from
// its first byte may ask for only that many bytes (see FetchFunc).
func (s *Store) SplitSize() int64 {
	if s.fillConnections < 2 || s.wholeFirst {
		return 0
	}
	return s.fillSplitSize
}

// minSegment is the smallest range worth a connection of its own.
const minSegment = 1 << 20

// stopSegments stops the workers, if any, and waits for them.
func (t *transfer) stopSegments() {
	t.splitPending = false
	if t.segs == nil {
		return
	}
	t.segs.cancel()
	t.segs.wg.Wait()
	// What the ranges wrote stays known, for a later fill to keep.
	t.fl.extents = t.segs.extents(t.written, max(t.fl.size, 0))
	t.record(t.segs)
	t.segs, t.limit, t.segment = nil, 0, nil
}

// fetchSegment is the worker of one range: it fetches the range, writes
// it at its offset, and continues it after a break, like the main stream
// (attempts bounded by progress, with backoff). It gives up, leaving the
// rest to the main stream, when the attempts are spent or the upstream
// answers another range.
func (t *transfer) fetchSegment(ctx context.Context, sg *segments, g *segment, seg SegmentFunc) {
	defer sg.wg.Done()
	s := t.s
	bp := fillBuffers.Get().(*[]byte)
	defer fillBuffers.Put(bp)
	buf := *bp
	failures := 0
	var err error
	for g.first+g.done.Load() < g.end {
		before := g.done.Load()
		err = t.copySegment(ctx, sg, g, seg, buf)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			break
		}
		if g.slow.Swap(false) {
			// Dropped for its slowness: the rest comes again, from the
			// fill's next source when it has several, else over a new
			// connection; no failure.
			if t.fl.hasOtherSources() {
				g.source = (g.source + 1) % t.fl.sourceCount()
			}
			t.slowSwitches.Add(1)
			s.sourceSwitches.Add(1)
			if c := s.log.Check(zapcore.DebugLevel, "fill range too slow; fetching it again"); c != nil {
				c.Write(zap.String("digest", t.fl.d.String()), zap.Int64("offset", g.first+g.done.Load()),
					zap.Int64("end", g.end), zap.Int("source", g.source))
			}
			continue
		}
		if errors.Is(err, ErrRangeMismatch) {
			break
		}
		if g.done.Load() > before {
			failures = 0
		}
		failures++
		if failures > s.fillRetries {
			break
		}
		s.fillResumes.Add(1)
		if failures > 1 && !t.pauseCtx(ctx, failures-1) {
			break
		}
	}
	g.err = fmt.Errorf("fetching bytes %d-%d: %w", g.first, g.end-1, err)
	close(g.failed)
	select {
	case sg.wake <- struct{}{}:
	default:
	}
}

// openSegment opens g's rest, from off: with seg from the first body's
// source, or with the fetch of the fill's source g.source, asked to stop at
// the range's end (FetchEnd); a body that goes on past it is closed there.
func (t *transfer) openSegment(ctx context.Context, g *segment, seg SegmentFunc, off int64) (io.ReadCloser, error) {
	fl := t.fl
	fetch, i := fl.source(t.fetch, g.source)
	if i == 0 {
		g.source = 0
		return seg(ctx, off, g.end-1)
	}
	src, err := fetch(withFetchEnd(ctx, g.end), off)
	if err != nil {
		return nil, err
	}
	if src.Body == nil {
		return nil, errors.New("the upstream returned no body")
	}
	if src.Offset != off || src.Size >= 0 && fl.size >= 0 && src.Size != fl.size {
		_ = src.Body.Close()
		return nil, fmt.Errorf("asked for bytes %d- of %d and got a body from byte %d of %d: %w", off, fl.size, src.Offset, src.Size, ErrRangeMismatch)
	}
	return src.Body, nil
}

// copySegment fetches the rest of g and writes it at its offset.
func (t *transfer) copySegment(ctx context.Context, sg *segments, g *segment, seg SegmentFunc, buf []byte) error {
	off := g.first + g.done.Load()
	body, err := t.openSegment(ctx, g, seg, off)
	if err != nil {
		return err
	}
	defer body.Close()
	g.setBody(body)
	defer g.setBody(nil)
	stop := context.AfterFunc(ctx, func() { _ = body.Close() })
	defer stop()
	flushed, recorded := off, off
	for off < g.end {
		n, rerr := body.Read(buf[:min(int64(len(buf)), g.end-off)])
		if n > 0 {
			if _, werr := t.tmp.WriteAt(buf[:n], off); werr != nil {
				return fmt.Errorf("writing: %w", t.s.noteWriteError("writing a download", werr))
			}
			off += int64(n)
			g.done.Store(off - g.first)
			if off-flushed >= writebackChunk {
				startWriteback(t.tmp, flushed, off-flushed)
				flushed = off
			}
			if off-recorded >= recordEvery {
				t.record(sg)
				recorded = off
			}
			select {
			case sg.wake <- struct{}{}:
			default:
			}
		}
		if rerr == io.EOF && off < g.end {
			return fmt.Errorf("the range ended after %d bytes: %w", off-g.first, io.ErrUnexpectedEOF)
		}
		if rerr != nil && rerr != io.EOF {
			return rerr
		}
	}
	return nil
}

// catchUp hashes the prefix on from the file as the workers make it
// contiguous, publishing it to readers, until the content is whole (nil).
// When a worker gave up, it stops the others and returns an errBreak: the
// main stream then fetches the rest from the prefix.
func (t *transfer) catchUp() error {
	s, fl := t.s, t.fl
	sg := t.segs
	bp := fillBuffers.Get().(*[]byte)
	defer fillBuffers.Put(bp)
	buf := *bp
	lastRecord := t.pos
	for _, g := range sg.list {
		for t.pos < g.end {
			avail := g.first + g.done.Load()
			if avail <= t.pos {
				select {
				case <-sg.wake:
					continue
				case <-g.failed:
					if g.first+g.done.Load() > t.pos {
						continue
					}
					err := g.err
					t.stopSegments()
					return errBreak{fmt.Errorf("filling %s: %w", fl.d, err)}
				case <-s.ctx.Done():
					return errBreak{fmt.Errorf("filling %s: %w", fl.d, ErrClosed)}
				}
			}
			for t.pos < avail {
				n := min(int64(len(buf)), avail-t.pos)
				if _, err := t.tmp.ReadAt(buf[:n], t.pos); err != nil {
					return fmt.Errorf("filling %s: reading the download back: %w", fl.d, err)
				}
				t.h.Write(buf[:n])
				t.pos += n
			}
			t.written, t.flushed = t.pos, t.pos
			t.high = max(t.high, t.pos)
			fl.progress(t.written)
			if t.pos-lastRecord >= recordEvery {
				t.record(sg)
				lastRecord = t.pos
			}
		}
	}
	t.stopSegments()
	return nil
}

// watchSegments drops the body of a range that runs far slower than its
// siblings: under a quarter of the fastest rate another stream of the
// fill (a range, or the main stream in its own range) showed over the
// same window, each judged over rateWindow; its worker then fetches the
// rest again (see fetchSegment). A range with less than minSegment left
// is let finish, and the fill turns away from slow streams at most
// maxSlowSwitches times in all. It returns when ctx ends.
func (t *transfer) watchSegments(ctx context.Context, sg *segments) {
	defer sg.wg.Done()
	tick := time.NewTicker(rateWindow / 4)
	defer tick.Stop()
	meters := make([]rateMeter, len(sg.list))
	bodies := make([]int, len(sg.list))
	rates := make([]int64, len(sg.list))
	ok := make([]bool, len(sg.list))
	var main rateMeter
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			// Done with its own range, the main stream moves nothing and
			// raises no bar.
			mainRate, mainOK := main.add(now, t.moved.Load())
			for i, g := range sg.list {
				done := g.done.Load()
				n, reading := g.current()
				if n != bodies[i] || !reading || g.first+done >= g.end {
					// On a new body, between bodies (a pause after a
					// break) or finished: judged afresh from here.
					meters[i], bodies[i] = rateMeter{}, n
				}
				if !reading || g.first+done >= g.end {
					ok[i] = false
					continue
				}
				rates[i], ok[i] = meters[i].add(now, done)
			}
			for i, g := range sg.list {
				best := int64(0)
				if mainOK {
					best = mainRate
				}
				for j := range sg.list {
					if j != i && ok[j] {
						best = max(best, rates[j])
					}
				}
				if !ok[i] || rates[i] >= best/4 || g.end-(g.first+g.done.Load()) < minSegment ||
					t.slowSwitches.Load() >= maxSlowSwitches {
					continue
				}
				g.drop()
			}
		}
	}
}
