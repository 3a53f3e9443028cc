package mirror

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

// rangeWaitWindow is how far beyond the bytes a fill has a range may start
// and still be answered from the fill, once its bytes arrive; a range
// further out is passed through from the upstream while the fill goes on.
const rangeWaitWindow = 8 << 20

// byteRange is one satisfiable range of an object: first to last, both
// included.
type byteRange struct{ first, last int64 }

// parseSingleRange reads a Range header of one byte range against an
// object of size bytes, with the parser of ranges.go (RFC 9110, 14.1.2).
// ok is false for anything else (several ranges, another unit, an invalid
// range, a suffix of an empty object), which the caller answers as it
// does a whole request; unsatisfiable is set for a valid range that
// selects no byte.
func parseSingleRange(v string, size int64) (br byteRange, ok, unsatisfiable bool) {
	specs, valid := parseByteRanges(v)
	if !valid || len(specs) != 1 {
		return byteRange{}, false, false
	}
	s := specs[0]
	if size == 0 && s.first < 0 && s.suffix > 0 {
		return byteRange{}, false, false // the (empty) whole, as settleRange says
	}
	if !s.satisfiable(size) {
		return byteRange{}, true, true
	}
	if s.first < 0 {
		return byteRange{first: max(size-s.suffix, 0), last: size - 1}, true, false
	}
	last := size - 1
	if s.last >= 0 {
		last = min(s.last, size-1)
	}
	return byteRange{first: s.first, last: last}, true, false
}

// serveFillRange answers a GET of one byte range of a blob still being
// filled, as soon as those bytes can be had: from the fill once they are
// written (at once when they already are), or, when the range starts far
// beyond what the fill has, passed through from the upstream while the
// fill goes on. A client of a range checks the digest of what it
// assembles, as it does when a range is relayed; a range that ends with
// the blob waits for the verdict before its last byte. It reports false when it
// did not handle the request (not one plain range, or an unknown size):
// the caller waits for the verdict and serves the verified file.
func (m *Mirror) serveFillRange(w http.ResponseWriter, r *http.Request, t target, rd *cache.Reader, d digest.Digest) (bool, error) {
	size := rd.Size()
	h := r.Header
	if size < 0 || r.Method != http.MethodGet || h.Get("If-Range") != "" || h.Get("If-None-Match") != "" ||
		h.Get("If-Match") != "" || h.Get("If-Modified-Since") != "" || h.Get("If-Unmodified-Since") != "" {
		return false, nil
	}
	br, ok, unsatisfiable := parseSingleRange(h.Get("Range"), size)
	if !ok {
		return false, nil
	}
	if unsatisfiable {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		oci.Errorf(http.StatusRequestedRangeNotSatisfiable, oci.CodeSizeInvalid,
			"range not satisfiable: the content is %d bytes", size).Write(w, r)
		return true, nil
	}
	setBlobHeaders(w.Header(), d)
	if br.first > rd.Written()+rangeWaitWindow {
		if ce := m.log.Check(zapcore.DebugLevel, "range beyond the fill passed through"); ce != nil {
			ce.Write(zap.String("digest", d.String()), zap.Int64("first", br.first), zap.Int64("filled", rd.Written()))
		}
		w.Header().Del("Content-Range")
		return true, m.serveUncached(w, r, t, d)
	}
	if _, err := rd.Seek(br.first, 0); err != nil {
		return true, err
	}
	// The headers go out with the first bytes: a fill that fails before
	// any of them arrived is still answered with a proper error.
	n, err := rd.Ready()
	if err != nil {
		return true, err
	}
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.first, br.last, size))
	w.Header().Set("Content-Length", strconv.FormatInt(br.last-br.first+1, 10))
	w.WriteHeader(http.StatusPartialContent)
	rc := http.NewResponseController(w)
	// A range that ends with the blob holds back its last byte until the
	// digest verified, as a whole-blob answer does: a client that
	// assembles ranges never gets a clean end of a bad blob.
	holdLast := br.last == size-1
	left := br.last - br.first + 1
	if holdLast {
		left--
	}
	for left > 0 {
		if err != nil {
			m.abort(r, d, err)
		}
		c, werr := rd.CopyTo(w, min(n, left))
		if werr != nil {
			return true, nil // the client left; the fill goes on without it
		}
		left -= c
		_ = rc.Flush()
		if left > 0 {
			n, err = rd.Ready()
		}
	}
	if holdLast {
		if verr := rd.Wait(r.Context()); verr != nil {
			m.abort(r, d, verr)
		}
		var lastByte [1]byte
		if _, rerr := io.ReadFull(rd, lastByte[:]); rerr != nil {
			m.abort(r, d, rerr)
		}
		_, _ = w.Write(lastByte[:])
	}
	return true, nil
}
