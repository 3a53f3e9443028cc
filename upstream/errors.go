package upstream

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/regcache/regcache/oci"
)

// Errors of the client.
var (
	// ErrStalled means a response body delivered no byte for the stall
	// timeout.
	ErrStalled = errors.New("upstream body stalled")
	// ErrUnavailable means no endpoint of the upstream could be reached.
	ErrUnavailable = errors.New("no upstream endpoint reachable")
	// ErrInterrupted means a response body broke off before its end: the
	// connection was reset or closed early, or a read failed. Reads of
	// every body Do returns wrap it, except a stall (ErrStalled) and the
	// caller's own cancellation, which keep their own errors.
	ErrInterrupted = errors.New("upstream body interrupted")
	// ErrSlow means a caller found an endpoint's body too slow and turned
	// to another endpoint (Client.Demote).
	ErrSlow = errors.New("upstream endpoint too slow")
)

// maxErrorBody caps the error body read from an upstream.
const maxErrorBody = 64 << 10

// Error is a non-success answer of the upstream. Its text never carries
// credentials or tokens.
type Error struct {
	// Upstream is the registry's name.
	Upstream string
	// Status is the HTTP status of the answer.
	Status int
	// Items is the parsed OCI error body, possibly empty.
	Items []oci.ErrorItem
	// RetryAfter is the Retry-After header of the answer, if any.
	RetryAfter string
	// RateLimit is the pull budget the answer reported, if any.
	RateLimit *RateLimit
}

// Error implements error.
func (e *Error) Error() string {
	if len(e.Items) > 0 {
		return fmt.Sprintf("upstream %s answered %d %s: %s", e.Upstream, e.Status, e.Items[0].Code, e.Items[0].Message)
	}
	return fmt.Sprintf("upstream %s answered %d %s", e.Upstream, e.Status, http.StatusText(e.Status))
}

// errorFromResponse reads an error answer (at most maxErrorBody bytes of
// its body) and closes the body.
func errorFromResponse(name string, resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	e := &Error{
		Upstream:   name,
		Status:     resp.StatusCode,
		Items:      oci.ParseErrorBody(body),
		RetryAfter: resp.Header.Get("Retry-After"),
	}
	if rl, ok := ParseRateLimit(resp.Header); ok {
		e.RateLimit = &rl
	}
	return e
}

// Interface guards
var _ error = (*Error)(nil)
