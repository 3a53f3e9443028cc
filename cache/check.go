package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// checkBufferSize is the read size of a check of stored content.
const checkBufferSize = 1 << 20

// checkBuffers recycles the buffers of checks.
var checkBuffers = sync.Pool{New: func() any { b := make([]byte, checkBufferSize); return &b }}

// checkResult is the outcome of hashing one stored file.
type checkResult struct {
	// info identifies the file that was hashed.
	info os.FileInfo
	// got is what its bytes hash to.
	got digest.Digest
	// size is the size recorded for the object; -1 when unknown.
	size int64
}

// bad reports whether the file does not hold d's content.
func (c checkResult) bad(d digest.Digest) bool {
	return c.got != d || c.size >= 0 && c.size != c.info.Size()
}

// checkFile hashes the stored file of d, pacing the reads with p (nil: as
// fast as the disk goes). It returns ErrNotFound when d is not stored.
func (s *Store) checkFile(ctx context.Context, d digest.Digest, p *pacer) (checkResult, error) {
	path, err := s.blobPath(d)
	if err != nil {
		return checkResult{}, err
	}
	if !d.Algorithm().Available() {
		return checkResult{}, fmt.Errorf("checking %s: %w", d, digest.ErrDigestUnsupported)
	}
	f, err := os.Open(path)
	if err != nil {
		return checkResult{}, notFound(d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return checkResult{}, fmt.Errorf("checking %s: %w", d, err)
	}
	size := int64(-1)
	if m, ok := s.readObjectMeta(d); ok {
		size = m.Size
	}
	h := d.Algorithm().Hash()
	bp := checkBuffers.Get().(*[]byte)
	defer checkBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if err := p.wait(ctx, int64(n)); err != nil {
				return checkResult{}, err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return checkResult{}, fmt.Errorf("checking %s: reading: %w", d, rerr)
		}
		if err := ctx.Err(); err != nil {
			return checkResult{}, err
		}
	}
	return checkResult{info: fi, got: digest.NewDigest(d.Algorithm(), h), size: size}, nil
}

// check hashes the stored file of d and settles its fate: a good file is
// marked verified; a bad one is condemned (removed, logged, counted) when
// repair is set, else only forgotten as verified, so that the next whole
// read hashes it again. It reports whether the file was bad.
func (s *Store) check(ctx context.Context, d digest.Digest, p *pacer, repair bool, how string) (bad bool, size int64, err error) {
	res, err := s.checkFile(ctx, d, p)
	if err != nil {
		return false, 0, err
	}
	if !res.bad(d) {
		if s.sameStoredFile(d, res.info) {
			s.markVerified(d)
		}
		return false, res.info.Size(), nil
	}
	if repair {
		s.condemn(d, res.info, res.got, how)
	} else {
		s.forgetVerified(d)
	}
	return true, res.info.Size(), nil
}

// pacer bounds the rate of a check's reads in bytes per second. A nil
// pacer, or one with no rate, does not wait.
type pacer struct {
	rate  int64
	start time.Time
	bytes int64
}

// newPacer returns a pacer of rate bytes per second; rate <= 0: unbounded.
func newPacer(rate int64) *pacer {
	return &pacer{rate: rate, start: time.Now()}
}

// pacerMaxWait caps one wait, so that a pacer resumed after a long pause
// does not burst, and one far ahead does not sleep for long.
const pacerMaxWait = time.Second

// wait accounts for n more bytes and waits until the rate allows them, or
// ctx ends.
func (p *pacer) wait(ctx context.Context, n int64) error {
	if p == nil || p.rate <= 0 {
		return nil
	}
	p.bytes += n
	due := p.start.Add(time.Duration(float64(p.bytes) / float64(p.rate) * float64(time.Second)))
	ahead := time.Until(due)
	if ahead <= 0 {
		if -ahead > pacerMaxWait {
			// Idle for a while (between objects, say): no credit for it.
			p.start, p.bytes = time.Now(), 0
		}
		return nil
	}
	t := time.NewTimer(min(ahead, pacerMaxWait))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
