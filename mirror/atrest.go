package mirror

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
)

// serveCached sends a stored blob. A GET answered with the whole object
// (200) whose bytes were not hashed since the cache opened is hashed as
// it is sent (serveVerifying); one already verified goes by sendfile
// (serveChecked). In both, the last byte waits for the verdict, so that a
// client never gets a clean end of bytes the cache knows are wrong. That
// holds whatever headers led to the whole object: none, a Range the
// server ignores (an unknown unit, an invalid range set, a failed
// If-Range) or a condition that passed (If-None-Match of another ETag).
// Ranges answered in part (206), HEAD and answers without content (304,
// 412, 416) are served as they are (reading the whole object for a range
// would cost more than the range); the cache checks a blob read in part
// soon after, in the background, at the scrub's rate.
func (m *Mirror) serveCached(w http.ResponseWriter, r *http.Request, rd *cache.Reader, d digest.Digest) {
	f := rd.File()
	if r.Method != http.MethodGet {
		m.serveFile(w, r, f, d, rd.Size())
		return
	}
	if needsServeContent(r) {
		setBlobHeaders(w.Header(), d)
		if status := answerStatus(r, w.Header(), rd.Size()); status != http.StatusOK {
			if status == http.StatusPartialContent {
				// Sent in part: the cache checks it soon, in the background.
				m.store.CheckSoon(d)
			}
			m.serveFile(w, r, f, d, rd.Size())
			return
		}
	}
	if m.store.Verified(d) {
		m.serveChecked(w, r, f, d, rd.Size())
		return
	}
	m.serveVerifying(w, r, f, d, rd.Size())
}

// serveChecked sends a whole verified blob with sendfile, all but its last
// byte; that one goes only if the file was not found corrupt meanwhile (by
// the scrub, a verify, or another client's first read).
func (m *Mirror) serveChecked(w http.ResponseWriter, r *http.Request, f *os.File, d digest.Digest, size int64) {
	setBlobHeaders(w.Header(), d)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if size == 0 {
		return
	}
	var n int64
	var err error
	if rf, ok := w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(io.LimitReader(f, size-1))
	} else {
		n, err = io.CopyN(w, f, size-1)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if r.Context().Err() == nil {
			m.log.Debug("sending cached blob", zap.String("digest", d.String()), zap.Error(err))
		}
		return
	}
	var last [1]byte
	if n == size-1 {
		_, err = f.ReadAt(last[:], size-1)
	}
	if n < size-1 || errors.Is(err, io.EOF) {
		// The file is shorter than the object.
		m.store.ReportCorrupt(d, f, "read")
		m.abortCorrupt(r, d)
	}
	if err != nil {
		m.log.Error("reading cached blob", zap.String("digest", d.String()), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	if m.store.Condemned(d, f) {
		m.abortCorrupt(r, d)
	}
	_, _ = w.Write(last[:])
}

// serveVerifying sends a whole blob not verified since the cache opened,
// hashing it on the way: the cost of the check is one pass of SHA-256
// over bytes that are read anyway (without sendfile, though). A mismatch
// removes the object (logged at Error and counted by the cache) and
// aborts the response before its last byte; a match marks the object
// verified, so the next client gets it by sendfile.
func (m *Mirror) serveVerifying(w http.ResponseWriter, r *http.Request, f *os.File, d digest.Digest, size int64) {
	setBlobHeaders(w.Header(), d)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	h := d.Algorithm().Hash()
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	// read counts the bytes hashed, sent those sent: all but the last of
	// the size announced, which waits in last.
	var read, sent int64
	var last [1]byte
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if at := size - 1 - read; at >= 0 && at < int64(n) {
				last[0] = buf[at]
			}
			if k := min(int64(n), size-1-sent); k > 0 {
				if _, werr := w.Write(buf[:k]); werr != nil {
					return // the client left; the object stays unverified
				}
				sent += k
			}
			read += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			m.log.Error("reading cached blob", zap.String("digest", d.String()), zap.Error(rerr))
			panic(http.ErrAbortHandler)
		}
	}
	if err := m.store.CheckRead(d, f, digest.NewDigest(d.Algorithm(), h), read); err != nil || read != size {
		m.abortCorrupt(r, d)
	}
	if ce := m.log.Check(zapcore.DebugLevel, "blob verified on its first read"); ce != nil {
		ce.Write(zap.String("digest", d.String()), zap.Int64("bytes", size))
	}
	if size > 0 {
		_, _ = w.Write(last[:])
	}
}

// abortCorrupt ends the response of a blob found corrupt (which the cache
// logged at Error) without its last byte: the client sees a broken
// transfer, never a clean end of wrong bytes, and its retry fetches the
// blob again.
func (m *Mirror) abortCorrupt(r *http.Request, d digest.Digest) {
	if ce := m.log.Check(zapcore.DebugLevel, "aborting blob response: stored content is corrupt"); ce != nil {
		ce.Write(zap.String("digest", d.String()))
	}
	panic(http.ErrAbortHandler)
}
