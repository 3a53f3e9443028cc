package mirror

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

// copyBufferSize is the buffer for streaming a fill to a client.
const copyBufferSize = 256 << 10

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// setBlobHeaders sets the headers of every blob response.
func setBlobHeaders(h http.Header, d digest.Digest) {
	h.Set("Content-Type", blobContentType)
	h.Set(oci.ContentDigestHeader, d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	// Content addressed by digest never changes.
	h.Set("Cache-Control", "max-age=31536000, immutable")
}

// needsServeContent reports whether a request asks for more than the whole
// object: a range or a condition, which http.ServeContent answers.
func needsServeContent(r *http.Request) bool {
	h := r.Header
	return h.Get("Range") != "" || h.Get("If-None-Match") != "" || h.Get("If-Match") != "" ||
		h.Get("If-Modified-Since") != "" || h.Get("If-Unmodified-Since") != "" || h.Get("If-Range") != ""
}

// serveFile sends a verified blob. A plain GET of the whole object hands the
// bare *os.File to the response's ReadFrom so the kernel can copy it
// (sendfile); ranges and conditional requests go through serveContent.
func (m *Mirror) serveFile(w http.ResponseWriter, r *http.Request, f *os.File, d digest.Digest, size int64) {
	setBlobHeaders(w.Header(), d)
	r = withSettledRange(r, size)
	if needsServeContent(r) {
		serveContent(w, r, f, size)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	var err error
	if rf, ok := w.(io.ReaderFrom); ok {
		_, err = rf.ReadFrom(f)
	} else {
		_, err = io.Copy(w, f)
	}
	if err != nil && r.Context().Err() == nil {
		m.log.Debug("sending cached blob", zap.String("digest", d.String()), zap.Error(err))
	}
}

// serveFill streams a blob that is still being filled. A whole-object GET
// streams as bytes arrive but holds back the final byte until the digest
// verified, and is aborted (connection or stream reset) when the fill
// fails, so that no client ever sees a clean end of a bad blob. One plain
// range is answered as soon as its bytes can be had (see serveFillRange).
// Other ranges and conditional requests, and fills of unknown size, wait
// for the verdict and are served from the verified file. It returns an
// error only while nothing has been sent.
func (m *Mirror) serveFill(w http.ResponseWriter, r *http.Request, t target, rd *cache.Reader, d digest.Digest) error {
	if r.Header.Get("Range") != "" {
		if handled, err := m.serveFillRange(w, r, t, rd, d); handled {
			return err
		}
	}
	if rd.Size() < 0 || needsServeContent(r) {
		if err := rd.Wait(r.Context()); err != nil {
			return err
		}
		// Verified: served from the reader's own file, which may not be
		// stored (larger than the budget, or the disk is full).
		m.serveFile(w, r, rd.File(), d, rd.Size())
		return nil
	}
	size := rd.Size()
	// The headers go out with the first bytes: a fill that fails before
	// any byte arrived is still answered with a proper error.
	n, err := rd.Ready()
	if err != nil && err != io.EOF {
		return err
	}
	setBlobHeaders(w.Header(), d)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	var sent int64
	for {
		if err == io.EOF {
			return nil
		}
		if err != nil {
			m.abort(r, d, err)
		}
		if last := sent+n >= size; last {
			// The last byte waits for the verdict.
			if n > 1 {
				if _, werr := rd.CopyTo(w, n-1); werr != nil {
					return nil // the client left; the fill goes on without it
				}
			}
			_ = rc.Flush()
			if verr := rd.Wait(r.Context()); verr != nil {
				m.abort(r, d, verr)
			}
			// Written, not sent: net/http sends it when the handler
			// returns, after the request was counted, as it did every
			// byte before sendfile streamed them.
			var lastByte [1]byte
			if _, rerr := io.ReadFull(rd, lastByte[:]); rerr != nil {
				m.abort(r, d, rerr)
			}
			_, _ = w.Write(lastByte[:])
			return nil
		}
		// The bytes written so far go from the file to the client (with
		// sendfile where the connection allows), then out at once: the
		// client is caught up with the fill.
		c, werr := rd.CopyTo(w, n)
		if werr != nil {
			return nil
		}
		sent += c
		_ = rc.Flush()
		n, err = rd.Ready()
	}
}

// abort ends the response abnormally. The net/http server (and Caddy's)
// treats http.ErrAbortHandler as a request to reset the connection or
// stream without logging a stack trace. It must be called on the
// handler's goroutine.
func (m *Mirror) abort(r *http.Request, d digest.Digest, err error) {
	if r.Context().Err() == nil {
		m.abortLog.Event(zap.String("digest", d.String()), zap.Error(err))
	}
	panic(http.ErrAbortHandler)
}
