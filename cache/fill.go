package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
)

// fillBufferSize is the copy buffer of a fill.
const fillBufferSize = 256 << 10

// Source is an upstream body being filled into the cache.
type Source struct {
	// Body is the content; the fill closes it.
	Body io.ReadCloser
	// Size is the expected size, or -1 when unknown.
	Size int64
	// MediaType is recorded with the object.
	MediaType string
}

// FetchFunc opens the upstream body of a fill. It is called with a context
// owned by the fill, detached from every client and cancelled only by
// Store.Close, so the fill completes even if all its clients leave.
type FetchFunc func(ctx context.Context) (Source, error)

// fill is the one download in progress of a digest.
type fill struct {
	d       digest.Digest
	tmpPath string

	ready     chan struct{} // closed when fetch returned
	fetchErr  error         // set before ready closes
	size      int64         // set before ready closes
	mediaType string        // set before ready closes

	mu      sync.Mutex
	written int64
	done    bool
	err     error         // the verdict, once done
	notify  chan struct{} // closed and replaced on every change
	readers int
}

// progress publishes n written bytes.
func (f *fill) progress(n int64) {
	f.mu.Lock()
	f.written = n
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// finish publishes the verdict.
func (f *fill) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

// state returns what readers need under one lock.
func (f *fill) state() (written int64, done bool, err error, notify <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.written, f.done, f.err, f.notify
}

// Fill returns a reader of d's content: of the stored file when d is
// present, otherwise of the one fill of d, joining the fill in progress or
// starting it with fetch. It waits until fetch has returned, so upstream
// errors come back here unchanged, or until ctx ends. ctx bounds only this
// caller's waiting and reading, never the fill.
func (s *Store) Fill(ctx context.Context, d digest.Digest, fetch FetchFunc) (*Reader, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if f, obj, err := s.Open(d); err == nil {
		return &Reader{ctx: ctx, file: f, size: obj.Size, mediaType: obj.MediaType, complete: true}, nil
	}
	s.mu.Lock()
	fl, ok := s.fills[d]
	if !ok {
		var err error
		fl, err = s.startFill(d, fetch)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	file, err := fl.open(s.blobPath(d))
	if err == nil {
		fl.mu.Lock()
		fl.readers++
		fl.mu.Unlock()
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	r := &Reader{ctx: ctx, fill: fl, file: file}
	select {
	case <-fl.ready:
	case <-ctx.Done():
		_ = r.Close()
		return nil, ctx.Err()
	}
	if fl.fetchErr != nil {
		_ = r.Close()
		return nil, fl.fetchErr
	}
	r.size, r.mediaType = fl.size, fl.mediaType
	return r, nil
}

// open opens the fill's content for a new reader: the temporary file, or
// the committed one when the fill just renamed it. Called with s.mu held,
// while the fill is still registered.
func (f *fill) open(committed string) (*os.File, error) {
	file, err := os.Open(f.tmpPath)
	if err == nil {
		return file, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("joining fill of %s: %w", f.d, err)
	}
	if _, done, ferr, _ := f.state(); done && ferr != nil {
		return nil, ferr
	}
	file, err = os.Open(committed)
	if err != nil {
		return nil, fmt.Errorf("joining fill of %s: %w", f.d, err)
	}
	return file, nil
}

// startFill registers and starts the fill of d. Called with s.mu held.
func (s *Store) startFill(d digest.Digest, fetch FetchFunc) (*fill, error) {
	if !d.Algorithm().Available() {
		return nil, fmt.Errorf("filling %s: %w", d, ErrDigestMismatch)
	}
	tmp, err := os.CreateTemp(s.ingestDir, d.Encoded()+"-*")
	if err != nil {
		return nil, fmt.Errorf("filling %s: %w", d, err)
	}
	fl := &fill{d: d, tmpPath: tmp.Name(), ready: make(chan struct{}), notify: make(chan struct{})}
	s.fills[d] = fl
	s.wg.Add(1)
	go s.runFill(fl, tmp, fetch)
	return fl, nil
}

// runFill downloads, verifies and commits one fill, then unregisters it.
func (s *Store) runFill(fl *fill, tmp *os.File, fetch FetchFunc) {
	defer s.wg.Done()
	err := s.download(fl, tmp, fetch)
	if err == nil {
		obj := Object{Digest: fl.d, Size: fl.written, MediaType: fl.mediaType}
		if err = s.commit(tmp, obj); err == nil {
			s.setIndex(obj, nil)
		}
	}
	if err != nil {
		if s.ctx.Err() != nil && !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		// The verdict first, then the file: a reader joining in between
		// sees the verdict instead of a missing file.
		fl.finish(err)
		_ = tmp.Close()
		_ = os.Remove(fl.tmpPath)
		if fl.fetchErr == nil && !errors.Is(err, ErrClosed) {
			s.log.Warn("fill failed", zap.String("digest", fl.d.String()), zap.Int64("bytes", fl.written), zap.Error(err))
		}
	} else {
		fl.finish(nil)
	}
	s.mu.Lock()
	delete(s.fills, fl.d)
	s.mu.Unlock()
}

// download fetches the body into tmp, hashing it, and checks its size and
// digest. It leaves tmp open on success for commit.
func (s *Store) download(fl *fill, tmp *os.File, fetch FetchFunc) error {
	src, err := fetch(s.ctx)
	if err != nil {
		fl.fetchErr = err
		close(fl.ready)
		return err
	}
	fl.size, fl.mediaType = src.Size, src.MediaType
	close(fl.ready)
	defer src.Body.Close()

	h := fl.d.Algorithm().Hash()
	buf := make([]byte, fillBufferSize)
	var written int64
	for {
		n, rerr := src.Body.Read(buf)
		if n > 0 {
			if src.Size >= 0 && written+int64(n) > src.Size {
				return fmt.Errorf("filling %s: more than %d bytes: %w", fl.d, src.Size, ErrSizeMismatch)
			}
			if _, werr := tmp.Write(buf[:n]); werr != nil {
				return fmt.Errorf("filling %s: writing: %w", fl.d, werr)
			}
			h.Write(buf[:n])
			written += int64(n)
			fl.progress(written)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("filling %s: reading upstream after %d bytes: %w", fl.d, written, rerr)
		}
	}
	if src.Size >= 0 && written != src.Size {
		return fmt.Errorf("filling %s: got %d of %d bytes: %w", fl.d, written, src.Size, ErrSizeMismatch)
	}
	if got := digest.NewDigest(fl.d.Algorithm(), h); got != fl.d {
		return fmt.Errorf("filling %s: content hashes to %s: %w", fl.d, got, ErrDigestMismatch)
	}
	return nil
}

// FillStats reports the fills in flight and the readers attached to them.
func (s *Store) FillStats() (fills, readers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fl := range s.fills {
		fl.mu.Lock()
		readers += fl.readers
		fl.mu.Unlock()
	}
	return len(s.fills), readers
}
