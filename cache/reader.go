package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Reader reads one object while it is being filled, or after. Each Reader
// has its own file descriptor and offset; a Reader is not safe for
// concurrent use.
type Reader struct {
	ctx       context.Context // bounds waiting for bytes
	fill      *fill           // nil when complete
	file      *os.File
	off       int64
	size      int64
	mediaType string
	complete  bool
	closed    bool
	started   bool   // the caller's Fill started the fill
	release   func() // ends the object's use, which holds off eviction
}

// completeReader reads a stored, verified object.
func (s *Store) completeReader(ctx context.Context, f *os.File, obj Object) *Reader {
	return &Reader{ctx: ctx, file: f, size: obj.Size, mediaType: obj.MediaType, complete: true,
		release: s.use(obj.Digest)}
}

// Read reads at the reader's offset. On a fill in progress it blocks until
// bytes beyond the offset are written, the fill fails (the error wraps the
// cause: ErrDigestMismatch, ErrSizeMismatch, the upstream's read error,
// ErrClosed), or the context of Fill ends. It never returns io.EOF before
// the fill's digest verified.
func (r *Reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, os.ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	avail, err := r.Ready()
	if err != nil {
		return 0, err
	}
	n := min(int64(len(p)), avail)
	got, err := r.file.ReadAt(p[:n], r.off)
	r.off += int64(got)
	if got > 0 {
		return got, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return 0, fmt.Errorf("reading cached content at offset %d: %w", r.off, err)
}

// Ready waits, like Read, until bytes beyond the reader's offset are
// written, and returns how many can be read now without waiting. It
// returns io.EOF at the end of verified content, and the fill's error (or
// the context's of Fill) as Read does.
func (r *Reader) Ready() (int64, error) {
	if r.closed {
		return 0, os.ErrClosed
	}
	for {
		avail := r.size
		var done bool
		var ferr error
		var notify <-chan struct{}
		if !r.complete {
			avail, done, ferr, notify = r.fill.state()
			if ferr != nil {
				return 0, ferr
			}
		}
		if r.off < avail {
			return avail - r.off, nil
		}
		if r.complete || done {
			return 0, io.EOF
		}
		select {
		case <-notify:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// CopyTo writes the next n bytes, which Ready reported, to w and advances
// the offset by what was written. When w is an io.ReaderFrom (an HTTP
// response) it gets the reader's own file, limited to those bytes, so that
// the kernel can copy them (sendfile).
func (r *Reader) CopyTo(w io.Writer, n int64) (int64, error) {
	if r.closed {
		return 0, os.ErrClosed
	}
	if _, err := r.file.Seek(r.off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("reading cached content at offset %d: %w", r.off, err)
	}
	var written int64
	var err error
	if rf, ok := w.(io.ReaderFrom); ok {
		written, err = rf.ReadFrom(io.LimitReader(r.file, n))
	} else {
		written, err = io.CopyN(w, r.file, n)
	}
	r.off += written
	if err == nil && written < n {
		err = fmt.Errorf("reading cached content at offset %d: %w", r.off, io.ErrUnexpectedEOF)
	}
	return written, err
}

// Seek sets the offset of the next Read; an offset beyond the bytes
// written so far makes Read wait for them. io.SeekEnd needs a known size.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = r.off
	case io.SeekEnd:
		size := r.size
		if size < 0 && r.fill != nil {
			// A verified fill knows its size even if it was not announced.
			if written, done, err, _ := r.fill.state(); done && err == nil {
				size = written
			}
		}
		if size < 0 {
			return 0, errors.New("seek from the end: size unknown")
		}
		base = size
	default:
		return 0, fmt.Errorf("seek: invalid whence %d", whence)
	}
	if base+offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = base + offset
	return r.off, nil
}

// Close releases the reader's file. It does not affect the fill.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.fill != nil {
		r.fill.addReaders(-1)
	}
	if r.release != nil {
		r.release()
	}
	return r.file.Close()
}

// Written returns how many first bytes of the content can be read now
// without waiting: the size of a complete object, else the bytes the fill
// wrote so far.
func (r *Reader) Written() int64 {
	if r.complete {
		return r.size
	}
	written, _, _, _ := r.fill.state()
	return written
}

// AddSource offers the fill being read a further source of the content:
// the fetch of another client that joined it (another upstream or
// endpoint, other credentials), once that client's access was checked.
// When the fill's current source fails or sends nothing for a while, the
// fill continues from the next source, where it stopped. It does nothing
// for a complete object.
func (r *Reader) AddSource(fetch FetchFunc) {
	if !r.complete && r.fill != nil && fetch != nil {
		r.fill.addSource(fetch)
	}
}

// Size returns the expected size, or -1 when unknown.
func (r *Reader) Size() int64 { return r.size }

// MediaType returns the object's media type.
func (r *Reader) MediaType() string { return r.mediaType }

// Complete reports whether the reader serves an already verified file.
func (r *Reader) Complete() bool { return r.complete }

// File returns the verified file when Complete (which a reader of a fill
// becomes once Wait returned nil), else nil; with it a server can hand the
// file to the kernel (sendfile). The Reader keeps owning it. The file may
// not be stored: content larger than the budget, or verified while the
// disk was full, is served from its download and then dropped.
func (r *Reader) File() *os.File {
	if r.complete {
		return r.file
	}
	return nil
}

// Wait waits for the fill's verdict: nil when the content verified (the
// reader is then Complete, with its size known). It returns ctx's error if
// ctx ends first.
func (r *Reader) Wait(ctx context.Context) error {
	if r.complete {
		return nil
	}
	for {
		written, done, err, notify := r.fill.state()
		if done {
			if err == nil {
				r.complete, r.size = true, written
			}
			return err
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Interface guards
var _ io.ReadSeekCloser = (*Reader)(nil)
