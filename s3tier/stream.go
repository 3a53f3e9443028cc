package s3tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
)

// errStreamClosed ends a Read of a stream closed meanwhile.
var errStreamClosed = errors.New("shared fill stream closed")

// maxChunkFailures is how many chunk reads in a row may fail before a
// follower stops following and fetches from the upstream itself.
const maxChunkFailures = 3

// stream is the body of a fill that goes through the bucket, a state
// machine (see streamState and next). It follows another node's fill
// chunk by chunk (then the shared copy once the chunks are gone); when
// that node's lease expires it takes the lease over (or, without the
// bucket, goes alone) and reads the upstream from the start, skipping
// what it already returned. While it holds the lease it publishes what it
// reads in chunks.
type stream struct {
	t     *Tier
	d     digest.Digest
	ctx   context.Context
	fetch cache.FetchFunc
	chunk int64 // the chunk size
	size  int64 // -1: unknown
	off   int64 // bytes returned
	// state is where the bytes come from; only Read changes it.
	state streamState

	mu     sync.Mutex
	cur    io.ReadCloser // the open chunk or shared copy; under mu
	up     io.ReadCloser // the upstream body once reading it; under mu
	closed chan struct{}
	once   sync.Once

	// Reading the bucket.
	leaseID   string
	curFinal  bool  // cur is the shared copy
	curLast   bool  // cur is the last chunk
	failures  int   // chunk reads failed in a row
	lastErr   error // the last of those failures
	upPos     int64 // bytes read from up
	skipBuf   []byte
	published int64 // chunks published

	// Leading.
	lease      *lease // held; nil but when leading (kept for the verdict)
	publishing bool   // chunks are being published
	buf        []byte // the chunk being gathered
	// readShared is set once bytes came from the shared copy: a verdict
	// against them means that copy is bad.
	readShared bool
}

// follow makes the stream read the chunks of the fill under rec, at the
// chunk size its holder publishes.
func (s *stream) follow(rec leaseRecord) {
	s.leaseID = rec.ID
	if rec.ChunkSize > 0 {
		s.chunk = rec.ChunkSize
	}
}

// newStream returns a stream of d with the given size, in state st.
func (t *Tier) newStream(ctx context.Context, d digest.Digest, fetch cache.FetchFunc, size int64, st streamState) *stream {
	return &stream{t: t, d: d, ctx: ctx, fetch: fetch, chunk: t.cfg.ChunkSize, size: size, state: st, closed: make(chan struct{})}
}

// to moves the stream to the state that ev leads to.
func (s *stream) to(ev streamEvent) error {
	st, err := next(s.state, ev)
	if err != nil {
		return fmt.Errorf("shared fill of %s: %w", s.d, err)
	}
	s.state = st
	return nil
}

// Read returns the next bytes of the content.
func (s *stream) Read(p []byte) (int, error) {
	for {
		select {
		case <-s.closed:
			return 0, errStreamClosed
		default:
		}
		s.mu.Lock()
		up, cur := s.up, s.cur
		s.mu.Unlock()
		switch s.state {
		case streamDone:
			return 0, io.EOF
		case streamLeading, streamAlone:
			if up == nil {
				return 0, errStreamClosed
			}
			return s.readUpstream(up, p)
		}
		if s.size >= 0 && s.off >= s.size {
			return 0, io.EOF
		}
		if cur != nil {
			n, err := cur.Read(p)
			s.off += int64(n)
			if err == io.EOF {
				s.setCur(nil)
				s.failures = 0
				if s.curFinal || s.curLast {
					if err := s.to(evEnd); err != nil {
						return n, err
					}
				}
				err = nil
			} else if err != nil {
				// Read again from where it stopped, or give up on the bucket.
				s.setCur(nil)
				s.failed(err)
				err = nil
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err := s.openNext(); err != nil {
			return 0, err
		}
	}
}

// setCur replaces the open chunk or shared copy, closing the previous one.
func (s *stream) setCur(r io.ReadCloser) {
	s.mu.Lock()
	old := s.cur
	s.cur = r
	s.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

// openNext opens what holds the bytes at s.off: the chunk of the fill
// followed, else the shared copy; else it waits for the filling node, or
// takes its fill over.
func (s *stream) openNext() error {
	t := s.t
	if s.failures >= maxChunkFailures || !t.Available() {
		return s.goUpstream(nil)
	}
	if s.leaseID != "" {
		idx := s.off / s.chunk
		within := s.off - idx*s.chunk
		opts := minio.GetObjectOptions{}
		if within > 0 {
			_ = opts.SetRange(within, 0)
		}
		body, info, _, err := t.core.GetObject(s.ctx, t.cfg.Bucket, t.chunkKey(s.d, s.leaseID, idx), opts)
		err = t.check("get chunk", err)
		if err == nil {
			s.curFinal, s.curLast = false, within+info.Size < s.chunk
			s.setCur(t.stallGuard(body))
			return nil
		}
		if !errors.Is(err, cache.ErrNotFound) {
			s.failed(err)
			return t.pause(s.ctx, s.closed)
		}
	}
	src, err := t.openShared(s.ctx, s.d, s.off)
	if err == nil {
		s.curFinal, s.readShared = true, true
		s.setCur(src.Body)
		return nil
	}
	if !errors.Is(err, cache.ErrNotFound) {
		s.failed(err)
		return t.pause(s.ctx, s.closed)
	}
	rec, _, expired, err := t.readLease(s.ctx, t.leaseKey(s.d))
	switch {
	case err == nil && !expired && rec.ID == s.leaseID:
		// Not landed yet.
		return t.pause(s.ctx, s.closed)
	case err == nil && !expired:
		// Another node took the fill over; its chunks sit at the offsets
		// of its chunk size.
		s.follow(rec)
		return s.to(evFollow)
	case err != nil && !errors.Is(err, cache.ErrNotFound):
		s.lastErr = err
		return s.goUpstream(nil)
	}
	// The lease is gone or expired and the content is not shared: the
	// filling node died or failed. Take the fill over.
	l, holder, err := t.acquire(s.ctx, t.leaseKey(s.d), s.d)
	switch {
	case err != nil:
		s.lastErr = err
		return s.goUpstream(nil)
	case holder != nil:
		s.follow(*holder)
		return s.to(evFollow)
	}
	return s.goUpstream(l)
}

// failed counts a failed read of a chunk or of the shared copy.
func (s *stream) failed(err error) {
	s.failures++
	s.lastErr = err
}

// goUpstream switches the stream to the upstream body, from its start:
// under lease l (which it then publishes), or alone when l is nil.
func (s *stream) goUpstream(l *lease) error {
	src, err := s.fetch(s.ctx, 0)
	if err != nil {
		if l != nil {
			s.releaseLease(l)
		}
		return err
	}
	ev := evGiveUp
	if l != nil {
		ev = evTakeOver
	}
	if err := s.to(ev); err != nil {
		_ = src.Body.Close()
		if l != nil {
			s.releaseLease(l)
		}
		return err
	}
	if l == nil {
		s.t.counters.alone.Add(1)
		if s.t.Available() {
			s.t.log.Warn("reading a download through the shared store failed; fetching it from the upstream",
				zap.String("digest", s.d.String()), zap.Int64("offset", s.off), zap.Error(s.lastErr))
		}
	} else {
		// Published at this stream's chunk size, which its followers read
		// from the lease.
		l.started(src.Size, src.MediaType, s.chunk)
		s.lease, s.publishing = l, true
		s.t.log.Info("took over a fill from the upstream", zap.String("digest", s.d.String()), zap.Int64("offset", s.off))
	}
	s.setCur(nil)
	s.mu.Lock()
	s.up = src.Body
	s.mu.Unlock()
	return nil
}

// readUpstream reads the upstream body, first skipping the bytes already
// returned, and publishes what it reads while it holds the lease.
func (s *stream) readUpstream(up io.ReadCloser, p []byte) (int, error) {
	for s.upPos < s.off {
		if s.skipBuf == nil {
			s.skipBuf = make([]byte, 256<<10)
		}
		n, err := up.Read(s.skipBuf[:min(int64(len(s.skipBuf)), s.off-s.upPos)])
		s.absorb(s.skipBuf[:n])
		s.upPos += int64(n)
		if err == io.EOF && s.upPos < s.off {
			return 0, fmt.Errorf("the upstream body of %s ended at %d bytes, before %d: %w", s.d, s.upPos, s.off, io.ErrUnexpectedEOF)
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
	}
	n, err := up.Read(p)
	s.absorb(p[:n])
	s.upPos += int64(n)
	s.off += int64(n)
	if err == io.EOF {
		s.flush(true)
		if terr := s.to(evEnd); terr != nil {
			return n, terr
		}
	}
	return n, err
}

// absorb gathers read bytes into chunks and publishes each full one.
func (s *stream) absorb(b []byte) {
	for s.publishing && len(b) > 0 {
		if s.buf == nil {
			s.buf = make([]byte, 0, s.chunk)
		}
		n := min(len(b), int(s.chunk)-len(s.buf))
		s.buf = append(s.buf, b[:n]...)
		b = b[n:]
		if int64(len(s.buf)) == s.chunk {
			s.flush(false)
		}
	}
}

// flush publishes the gathered chunk; the last one (last set) is published
// even when empty, so that followers see where the content ends.
func (s *stream) flush(last bool) {
	if !s.publishing || (!last && len(s.buf) == 0) {
		return
	}
	t := s.t
	key := t.chunkKey(s.d, s.lease.rec.ID, s.published)
	_, err := t.client.PutObject(s.ctx, t.cfg.Bucket, key, bytes.NewReader(s.buf), int64(len(s.buf)),
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
	if err != nil {
		// Followers wait for the shared copy instead.
		s.publishing = false
		t.log.Warn("publishing a fill's chunk; other nodes wait for the whole object",
			zap.String("digest", s.d.String()), zap.Error(t.check("put chunk", err)))
		return
	}
	s.published++
	s.buf = s.buf[:0]
	if last {
		s.publishing = false
	}
}

// Close releases the open chunk and the upstream body. It may be called
// while a Read waits, which it then ends.
func (s *stream) Close() error {
	s.once.Do(func() { close(s.closed) })
	s.mu.Lock()
	cur, up := s.cur, s.up
	s.cur, s.up = nil, nil
	s.mu.Unlock()
	if cur != nil {
		_ = cur.Close()
	}
	if up != nil {
		_ = up.Close()
	}
	return nil
}

// done receives the fill's verdict. A fill that held the lease uploads
// its verified content under the digest's key (multipart, streamed from
// the verified file), then releases the lease and removes its chunks.
func (s *stream) done(content *os.File, obj cache.Object, err error) {
	t := s.t
	if s.readShared && (errors.Is(err, cache.ErrDigestMismatch) || errors.Is(err, cache.ErrSizeMismatch)) {
		// The shared copy is bad (verified objects never change, so the
		// bucket's was damaged): remove it, so that the next fill of any
		// node fetches the content again instead of failing on it.
		rctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
		rerr := t.client.RemoveObject(rctx, t.cfg.Bucket, t.blobKey(s.d), minio.RemoveObjectOptions{})
		cancel()
		t.log.Error("the shared copy of an object does not match its digest; removed it",
			zap.String("digest", s.d.String()), zap.NamedError("verdict", err), zap.NamedError("remove", rerr))
	}
	if s.lease == nil {
		return
	}
	// The upload ends with the store (its fill context), the lease's
	// release does not: other nodes then take the fill over at once.
	ctx, cancel := context.WithTimeout(s.ctx, finishTimeout)
	defer cancel()
	if err == nil && content != nil {
		_, uerr := t.client.PutObject(ctx, t.cfg.Bucket, t.blobKey(s.d), content, obj.Size,
			minio.PutObjectOptions{ContentType: obj.MediaType, PartSize: uint64(max(s.chunk, minPartSize))})
		if uerr = t.check("upload", uerr); uerr != nil {
			t.counters.uploadFailures.Add(1)
			t.log.Warn("sharing a verified fill", zap.String("digest", s.d.String()), zap.Error(uerr))
		} else {
			t.log.Debug("shared a verified fill", zap.String("digest", s.d.String()), zap.Int64("bytes", obj.Size))
		}
	}
	s.releaseLease(s.lease)
}

// releaseLease releases l, bounded by the tier's timeout per request.
func (s *stream) releaseLease(l *lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.t.cfg.Timeout)
	defer cancel()
	l.release(ctx)
}

// minPartSize is the smallest part of a multipart upload S3 accepts.
const minPartSize = 5 << 20

// stallFactor times the store's timeout is how long a read of a chunk or
// of the shared copy may wait for a byte before it fails (and the stream
// reads on from the bucket again or from the upstream): a store that stops
// sending must not hold a fill forever.
const stallFactor = 6

// stallGuard makes a body from the object store fail a read that waits
// longer than stallFactor times the store's timeout.
func (t *Tier) stallGuard(body io.ReadCloser) io.ReadCloser {
	return &stallBody{ReadCloser: body, timeout: stallFactor * t.cfg.Timeout}
}

// stallBody closes its body when one read waits too long, which ends that
// read with an error wrapping errStalled.
type stallBody struct {
	io.ReadCloser
	timeout time.Duration
}

// errStalled marks a read of the object store that got no byte in time.
var errStalled = errors.New("the object store sent nothing")

func (b *stallBody) Read(p []byte) (int, error) {
	timer := time.AfterFunc(b.timeout, func() { _ = b.ReadCloser.Close() })
	n, err := b.ReadCloser.Read(p)
	if !timer.Stop() && err != nil && err != io.EOF {
		err = fmt.Errorf("%w for %s: %w", errStalled, b.timeout, err)
	}
	return n, err
}

// Interface guards
var _ io.ReadCloser = (*stream)(nil)
