package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Reader reads one object while it is being filled, or after. Each Reader
// has its own file descriptor and offset.
type Reader struct {
	ctx       context.Context
	fill      *fill // nil when complete
	file      *os.File
	off       int64
	size      int64
	mediaType string
	complete  bool
	closed    bool
}

// Read reads at the reader's offset. On a fill in progress it blocks until
// bytes beyond the offset are written, the fill fails (the error wraps the
// cause), or the reader's context ends. It never returns io.EOF before the
// fill's digest verified.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		avail := r.size
		var done bool
		var ferr error
		var notify <-chan struct{}
		if !r.complete {
			avail, done, ferr, notify = r.fill.state()
		}
		if r.off < avail {
			n := int64(len(p))
			if rest := avail - r.off; rest < n {
				n = rest
			}
			got, err := r.file.ReadAt(p[:n], r.off)
			r.off += int64(got)
			if got > 0 {
				return got, nil
			}
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("reading cached content: %w", err)
		}
		if r.complete || done {
			if ferr != nil {
				return 0, ferr
			}
			return 0, io.EOF
		}
		select {
		case <-notify:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

// Seek sets the offset of the next Read. io.SeekEnd needs a known size.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = r.off
	case io.SeekEnd:
		if r.size < 0 {
			return 0, errors.New("seek from end: size unknown")
		}
		base = r.size
	default:
		return 0, errors.New("seek: invalid whence")
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
		r.fill.mu.Lock()
		r.fill.readers--
		r.fill.mu.Unlock()
	}
	return r.file.Close()
}

// Size returns the expected size, or -1 when unknown.
func (r *Reader) Size() int64 { return r.size }

// MediaType returns the object's media type.
func (r *Reader) MediaType() string { return r.mediaType }

// Complete reports whether the reader serves an already verified file.
func (r *Reader) Complete() bool { return r.complete }

// File returns the verified file when Complete, else nil; with it a
// server can hand the file to the kernel (sendfile).
func (r *Reader) File() *os.File {
	if r.complete {
		return r.file
	}
	return nil
}

// Wait waits for the fill's verdict: nil when the content verified.
func (r *Reader) Wait(ctx context.Context) error {
	if r.complete {
		return nil
	}
	for {
		_, done, err, notify := r.fill.state()
		if done {
			return err
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
