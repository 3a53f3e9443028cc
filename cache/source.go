package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// ErrRangeMismatch means an upstream answered a request for the content
// from some offset with a range other than the one asked for (a wrong
// Content-Range, or a size that differs from the one announced before).
// The fill then starts again from the first byte.
var ErrRangeMismatch = errors.New("upstream answered another range than asked for")

// RangeHeader is the Range header value asking for the content from byte
// off to its end, for a FetchFunc called with off > 0.
func RangeHeader(off int64) string {
	return "bytes=" + strconv.FormatInt(off, 10) + "-"
}

// BoundedRangeHeader is the Range header value asking for the content
// from byte off up to end (end excluded), for a FetchFunc called with a
// context that carries an end (FetchEnd).
func BoundedRangeHeader(off, end int64) string {
	return "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(end-1, 10)
}

// fetchEndKey is the context key of the end a fill wants a body to stop at.
type fetchEndKey struct{}

// withFetchEnd returns ctx carrying end, the byte (excluded) at which the
// fill wants the body of a FetchFunc call to stop; ctx itself when end is
// not positive.
func withFetchEnd(ctx context.Context, end int64) context.Context {
	if end <= 0 {
		return ctx
	}
	return context.WithValue(ctx, fetchEndKey{}, end)
}

// FetchEnd returns the byte (excluded) at which the fill that called a
// FetchFunc with ctx wants the body to stop, or 0 when it wants the content
// to its end. A fill continuing a partial download asks this way for only
// the bytes before the first range it kept, or for a first part when the
// store splits large fills; a FetchFunc may ignore it (the fill then closes
// the body where it needs no more), or ask for exactly that range with
// BoundedRangeHeader and mark where the body stops in Source.End
// (ResponseSource does with end).
func FetchEnd(ctx context.Context) int64 {
	end, _ := ctx.Value(fetchEndKey{}).(int64)
	return end
}

// FirstRangeHeader is the Range header value asking for only the first
// end bytes of the content, for a first fetch when the store splits
// large fills (Store.SplitSize): the rest is fetched in ranges.
func FirstRangeHeader(end int64) string {
	return "bytes=0-" + strconv.FormatInt(end-1, 10)
}

// ResponseSource makes the Source of a fill from an upstream's answer to a
// GET of the content from byte off (with RangeHeader(off) when off > 0),
// or of only the bytes before end when end > 0 (with FirstRangeHeader, or
// BoundedRangeHeader from off). A
// 200 is the whole content (Offset 0: the upstream ignored the range); a
// 206 must carry a Content-Range of exactly off to the end (or to end,
// or to the content's end when it is shorter), with the total size, else
// the body is closed and the error wraps ErrRangeMismatch. Any other
// status is an error. The Source takes the response's body.
func ResponseSource(resp *http.Response, off, end int64, mediaType string) (Source, error) {
	switch resp.StatusCode {
	case http.StatusOK:
		return Source{Body: resp.Body, Size: max(resp.ContentLength, -1), MediaType: mediaType}, nil
	case http.StatusPartialContent:
		first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		wantLast := total - 1
		if end > 0 {
			wantLast = min(end, total) - 1
		}
		if err == nil && (first != off || last != wantLast) {
			err = fmt.Errorf("asked for bytes %d- and got %d-%d/%d", off, first, last, total)
		}
		if err == nil && resp.ContentLength >= 0 && resp.ContentLength != last-first+1 {
			err = fmt.Errorf("Content-Range %d-%d with Content-Length %d", first, last, resp.ContentLength)
		}
		if err != nil {
			_ = resp.Body.Close()
			return Source{}, fmt.Errorf("%w: %w", ErrRangeMismatch, err)
		}
		src := Source{Body: resp.Body, Size: total, MediaType: mediaType, Offset: off}
		if last+1 < total {
			src.End = last + 1
		}
		return src, nil
	default:
		_ = resp.Body.Close()
		return Source{}, fmt.Errorf("upstream answered status %d", resp.StatusCode)
	}
}

// parseContentRange parses "bytes first-last/total" (RFC 9110, 14.4) with
// a known total.
func parseContentRange(v string) (first, last, total int64, err error) {
	unit, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return 0, 0, 0, fmt.Errorf("Content-Range %q is not a byte range", v)
	}
	span, size, ok := strings.Cut(rest, "/")
	a, b, ok2 := strings.Cut(span, "-")
	if !ok || !ok2 {
		return 0, 0, 0, fmt.Errorf("Content-Range %q is malformed", v)
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	total, err3 := strconv.ParseInt(size, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || total <= last {
		return 0, 0, 0, fmt.Errorf("Content-Range %q is malformed or has no total size", v)
	}
	return first, last, total, nil
}

// ResponseSegment checks an upstream's answer to a GET of bytes first to
// last of content of size bytes, and returns its body: a 206 whose
// Content-Range is exactly that range; anything else closes the body and
// returns an error wrapping ErrRangeMismatch.
func ResponseSegment(resp *http.Response, first, last, size int64) (io.ReadCloser, error) {
	if resp.StatusCode != http.StatusPartialContent {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("%w: asked for bytes %d-%d and got status %d", ErrRangeMismatch, first, last, resp.StatusCode)
	}
	a, b, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err == nil && (a != first || b != last || total != size) {
		err = fmt.Errorf("asked for bytes %d-%d/%d and got %d-%d/%d", first, last, size, a, b, total)
	}
	if err == nil && resp.ContentLength >= 0 && resp.ContentLength != last-first+1 {
		err = fmt.Errorf("Content-Range %d-%d with Content-Length %d", first, last, resp.ContentLength)
	}
	if err != nil {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("%w: %w", ErrRangeMismatch, err)
	}
	return resp.Body, nil
}
