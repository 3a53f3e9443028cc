package hubtest

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// bodyFaultWriter truncates or corrupts a successful answer's body.
type bodyFaultWriter struct {
	http.ResponseWriter
	kind        FaultKind
	wroteHeader bool
	active      bool  // the answer is a 2xx, so the fault applies
	length      int64 // Content-Length, or -1
	written     int64
}

// WriteHeader notes whether the answer is a success and its length.
func (bw *bodyFaultWriter) WriteHeader(status int) {
	if !bw.wroteHeader {
		bw.wroteHeader = true
		bw.active = status >= 200 && status < 300
		bw.length = -1
		if n, err := strconv.ParseInt(bw.Header().Get("Content-Length"), 10, 64); err == nil {
			bw.length = n
		}
	}
	bw.ResponseWriter.WriteHeader(status)
}

// Write passes p on, flipping the middle byte of the body (FaultCorrupt),
// or stopping after half of it and aborting the connection
// (FaultTruncate). Without a Content-Length the middle is that of the
// first write.
func (bw *bodyFaultWriter) Write(p []byte) (int, error) {
	if !bw.wroteHeader {
		bw.WriteHeader(http.StatusOK)
	}
	if !bw.active || len(p) == 0 {
		return bw.ResponseWriter.Write(p)
	}
	mid := bw.length / 2
	if bw.length < 0 {
		mid = bw.written + int64(len(p))/2
		bw.length = 2 * mid // fixes the middle for later writes
	}
	end := bw.written + int64(len(p))
	switch bw.kind {
	case FaultNoBody:
		_ = http.NewResponseController(bw.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	case FaultTruncate:
		if end > mid {
			n, _ := bw.ResponseWriter.Write(p[:mid-bw.written])
			bw.written += int64(n)
			_ = http.NewResponseController(bw.ResponseWriter).Flush()
			panic(http.ErrAbortHandler)
		}
	case FaultCorrupt:
		if bw.written <= mid && mid < end {
			q := make([]byte, len(p))
			copy(q, p)
			q[mid-bw.written] ^= 0xff
			p = q
		}
	}
	n, err := bw.ResponseWriter.Write(p)
	bw.written += int64(n)
	return n, err
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (bw *bodyFaultWriter) Unwrap() http.ResponseWriter { return bw.ResponseWriter }

// writeOversize answers 200 with a JSON object of size bytes, announcing
// announce bytes when positive.
func writeOversize(w http.ResponseWriter, size, announce int64) {
	w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if announce > 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(announce, 10))
	}
	w.WriteHeader(http.StatusOK)
	if size < 2 {
		return
	}
	chunk := bytes.Repeat([]byte{' '}, 64<<10)
	if _, err := w.Write([]byte{'{'}); err != nil {
		return
	}
	for left := size - 2; left > 0; {
		n := min(left, int64(len(chunk)))
		if _, err := w.Write(chunk[:n]); err != nil {
			return
		}
		left -= n
	}
	_, _ = w.Write([]byte{'}'})
}

// cutWriter passes a successful answer's body on until after bytes, then
// closes the connection (FaultCut).
type cutWriter struct {
	http.ResponseWriter
	after       int64
	wroteHeader bool
	active      bool // the answer is a 2xx, so the cut applies
	written     int64
}

// WriteHeader notes whether the answer is a success.
func (cw *cutWriter) WriteHeader(status int) {
	if !cw.wroteHeader {
		cw.wroteHeader = true
		cw.active = status >= 200 && status < 300
	}
	cw.ResponseWriter.WriteHeader(status)
}

// Write passes p on up to the cut, and there aborts the connection.
func (cw *cutWriter) Write(p []byte) (int, error) {
	if !cw.wroteHeader {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.active && cw.written+int64(len(p)) > cw.after {
		n, _ := cw.ResponseWriter.Write(p[:cw.after-cw.written])
		cw.written += int64(n)
		_ = http.NewResponseController(cw.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	}
	n, err := cw.ResponseWriter.Write(p)
	cw.written += int64(n)
	return n, err
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (cw *cutWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// expiryWriter stops a CDN transfer the moment its signed URL expires.
type expiryWriter struct {
	http.ResponseWriter
	now     func() time.Time
	expires time.Time
	expired func() // called once when the transfer is stopped
}

// Write passes p on while the URL is valid, and aborts the connection
// once it has expired.
func (ew *expiryWriter) Write(p []byte) (int, error) {
	if ew.now().After(ew.expires) {
		ew.expired()
		_ = http.NewResponseController(ew.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	}
	return ew.ResponseWriter.Write(p)
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (ew *expiryWriter) Unwrap() http.ResponseWriter { return ew.ResponseWriter }

// reByteRange matches a single byte range: bytes=S- or bytes=S-E.
var reByteRange = regexp.MustCompile(`^bytes=(\d+)-(\d*)$`)

// shiftRange moves the single byte range of a Range header by shift bytes
// (4096 when shift <= 0): back when it starts at shift or later, else
// forward, keeping its length (FaultWrongRange). Other headers are left
// alone.
func shiftRange(h http.Header, shift int64) {
	if shift <= 0 {
		shift = 4096
	}
	m := reByteRange.FindStringSubmatch(h.Get("Range"))
	if m == nil {
		return
	}
	start, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return
	}
	delta := -shift
	if start < shift {
		delta = shift
	}
	end := ""
	if m[2] != "" {
		e, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return
		}
		end = strconv.FormatInt(e+delta, 10)
	}
	h.Set("Range", fmt.Sprintf("bytes=%d-%s", start+delta, end))
	h.Del("If-Range")
}

// Interface guards
var (
	_ http.ResponseWriter = (*bodyFaultWriter)(nil)
	_ http.ResponseWriter = (*cutWriter)(nil)
	_ http.ResponseWriter = (*expiryWriter)(nil)
)
