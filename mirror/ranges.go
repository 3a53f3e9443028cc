package mirror

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/regcache/regcache/oci"
)

// Range requests follow RFC 9110 section 14. http.ServeContent does most
// of it; what it gets wrong for a registry is settled here first:
//
//   - A range unit other than bytes is ignored (section 14.2: "An origin
//     server MUST ignore a Range header field that contains a range unit it
//     does not understand"): 200 with the whole content, not 416.
//   - An invalid ranges-specifier (bad syntax, a last-pos before its
//     first-pos, section 14.1.1) is ignored, as section 14.2 allows: 200.
//   - A suffix-range of a non-zero length is satisfiable (section 14.1.1),
//     but on an empty representation it selects nothing, which a 206
//     cannot express (Content-Range needs first-pos <= last-pos, section
//     14.4): the header is ignored (section 14.2, "A server MAY ignore the
//     Range header field") and the empty content is sent with 200.
//   - A range set none of whose ranges is satisfiable (every first-pos at
//     or past the length, or a suffix-range of length 0) is answered 416
//     with Content-Range: bytes */<length> (section 15.5.17), after the
//     preconditions (section 13.2.2), with an OCI error body.
//   - Unsatisfiable ranges among satisfiable ones are dropped.

// rangeSpec is one range of a byte range set: first-last (last -1 when
// open), or the suffix of length suffix when first is -1.
type rangeSpec struct {
	first, last, suffix int64
}

// parseByteRanges parses a Range header value. ok is false when the unit
// is not bytes or the ranges-specifier is invalid.
func parseByteRanges(v string) (specs []rangeSpec, ok bool) {
	unit, set, found := strings.Cut(v, "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") {
		return nil, false
	}
	for part := range strings.SplitSeq(set, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue // empty list elements are allowed (RFC 9110 section 5.6.1)
		}
		a, b, found := strings.Cut(part, "-")
		if !found {
			return nil, false
		}
		if a == "" {
			n, err := parseRangeInt(b)
			if err != nil {
				return nil, false
			}
			specs = append(specs, rangeSpec{first: -1, suffix: n})
			continue
		}
		first, err := parseRangeInt(a)
		if err != nil {
			return nil, false
		}
		last := int64(-1)
		if b != "" {
			if last, err = parseRangeInt(b); err != nil || last < first {
				return nil, false
			}
		}
		specs = append(specs, rangeSpec{first: first, last: last})
	}
	return specs, len(specs) > 0
}

// parseRangeInt parses 1*DIGIT.
func parseRangeInt(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a range position: %q", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

// satisfiable reports whether the range selects at least one byte of a
// representation of size bytes.
func (s rangeSpec) satisfiable(size int64) bool {
	if s.first < 0 {
		return s.suffix > 0 && size > 0
	}
	return s.first < size
}

// String returns the range in the header's syntax.
func (s rangeSpec) String() string {
	switch {
	case s.first < 0:
		return "-" + strconv.FormatInt(s.suffix, 10)
	case s.last < 0:
		return strconv.FormatInt(s.first, 10) + "-"
	}
	return strconv.FormatInt(s.first, 10) + "-" + strconv.FormatInt(s.last, 10)
}

// settleRange returns the Range header value http.ServeContent should see
// for a representation of size bytes: "" to send it whole, the satisfiable
// ranges alone, or "bytes=<size>-" when none is satisfiable, which
// ServeContent answers 416 with Content-Range: bytes */<size> once the
// preconditions passed.
func settleRange(v string, size int64) string {
	if v == "" {
		return ""
	}
	specs, ok := parseByteRanges(v)
	if !ok {
		return ""
	}
	var kept []string
	for _, s := range specs {
		if size == 0 && s.first < 0 && s.suffix > 0 {
			return "" // nothing a 206 could express: the (empty) whole
		}
		if s.satisfiable(size) {
			kept = append(kept, s.String())
		}
	}
	if len(kept) == 0 {
		return "bytes=" + strconv.FormatInt(size, 10) + "-"
	}
	return "bytes=" + strings.Join(kept, ",")
}

// withSettledRange returns r, or a shallow copy of it whose Range header
// is settled for a representation of size bytes (see settleRange).
func withSettledRange(r *http.Request, size int64) *http.Request {
	v := r.Header.Get("Range")
	settled := settleRange(v, size)
	if settled == v {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = r.Header.Clone()
	if settled == "" {
		r2.Header.Del("Range")
	} else {
		r2.Header.Set("Range", settled)
	}
	return r2
}

// serveContent answers a range or conditional request for content of size
// bytes with http.ServeContent, after settling its Range header, and turns
// the error answers ServeContent writes as text (416, 412) into OCI error
// JSON, keeping their Content-Range.
func serveContent(w http.ResponseWriter, r *http.Request, content io.ReadSeeker, size int64) {
	ew := &ociErrorWriter{ResponseWriter: w, r: r, size: size}
	r = withSettledRange(r, size)
	if size == 0 && r.Header.Get("Range") != "" {
		// ServeContent sends an empty representation whole whatever the
		// range; a range left here is unsatisfiable, so the answer that
		// passed the preconditions becomes the 416.
		ew.unsatisfiable = true
		r = r.Clone(r.Context())
		r.Header.Del("Range")
	}
	http.ServeContent(ew, r, "", time.Time{}, content)
}

// answerStatus returns the status serveContent answers r with for content
// of size bytes whose response headers (ETag among them) are h, without
// reading any content: 200 when the whole content goes out (no range, or
// one ignored under RFC 9110 section 14.2, a failed If-Range or
// If-None-Match, ranges larger than the content together), 206, 304, 412
// or 416. It asks http.ServeContent itself, with HEAD (which settles
// preconditions and ranges as GET does) over content of that size that
// is never read.
func answerStatus(r *http.Request, h http.Header, size int64) int {
	probe := &statusProbe{header: h.Clone()}
	hr := r.Clone(r.Context())
	hr.Method = http.MethodHead
	serveContent(probe, hr, io.NewSectionReader(noContent{}, 0, size), size)
	if probe.status == 0 {
		return http.StatusOK
	}
	return probe.status
}

// statusProbe is the http.ResponseWriter of answerStatus: it keeps the
// status and drops the rest.
type statusProbe struct {
	header http.Header
	status int
}

// Header implements http.ResponseWriter.
func (p *statusProbe) Header() http.Header { return p.header }

// WriteHeader implements http.ResponseWriter.
func (p *statusProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}

// Write implements http.ResponseWriter.
func (p *statusProbe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}

// noContent is the content of answerStatus, which is never read.
type noContent struct{}

// ReadAt implements io.ReaderAt.
func (noContent) ReadAt(p []byte, _ int64) (int, error) { return 0, io.EOF }

// ociErrorWriter replaces an error answer of http.ServeContent by the OCI
// error of its status.
type ociErrorWriter struct {
	http.ResponseWriter
	r       *http.Request
	size    int64
	replied bool // an error was answered: later writes are dropped
	// unsatisfiable turns a 200 into a 416 (see serveContent).
	unsatisfiable bool
}

// WriteHeader implements http.ResponseWriter.
func (ew *ociErrorWriter) WriteHeader(status int) {
	if ew.unsatisfiable && status == http.StatusOK {
		status = http.StatusRequestedRangeNotSatisfiable
		ew.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(ew.size, 10))
	}
	if status < http.StatusBadRequest {
		ew.ResponseWriter.WriteHeader(status)
		return
	}
	ew.replied = true
	var e *oci.Error
	switch status {
	case http.StatusRequestedRangeNotSatisfiable:
		e = oci.Errorf(status, oci.CodeSizeInvalid, "range not satisfiable: the content is %d bytes", ew.size)
	case http.StatusPreconditionFailed:
		e = oci.Errorf(status, oci.CodeUnknown, "precondition failed")
	default:
		e = oci.Errorf(status, oci.CodeUnknown, "%s", http.StatusText(status))
	}
	ew.Header().Del("X-Content-Type-Options")
	e.Write(ew.ResponseWriter, ew.r)
}

// Write implements http.ResponseWriter.
func (ew *ociErrorWriter) Write(p []byte) (int, error) {
	if ew.replied {
		return len(p), nil
	}
	return ew.ResponseWriter.Write(p)
}

// ReadFrom keeps the response's own ReadFrom (sendfile) for ranges.
func (ew *ociErrorWriter) ReadFrom(src io.Reader) (int64, error) {
	if ew.replied {
		return io.Copy(io.Discard, src)
	}
	if rf, ok := ew.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(ew.ResponseWriter, src)
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (ew *ociErrorWriter) Unwrap() http.ResponseWriter { return ew.ResponseWriter }

// Interface guards
var (
	_ http.ResponseWriter = (*ociErrorWriter)(nil)
	_ io.ReaderFrom       = (*ociErrorWriter)(nil)
	_ http.ResponseWriter = (*statusProbe)(nil)
	_ io.ReaderAt         = noContent{}
)
