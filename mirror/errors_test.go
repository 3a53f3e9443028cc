package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestToOCI(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		code       oci.Code
		retryAfter string
	}{
		{"oci error kept", oci.Errorf(0, oci.CodeNameInvalid, "bad"), 400, oci.CodeNameInvalid, ""},
		{"wrapped oci error", fmt.Errorf("x: %w", oci.Errorf(0, oci.CodeDigestInvalid, "bad")), 400, oci.CodeDigestInvalid, ""},
		{"upstream 404 with code", &upstream.Error{Status: 404, Items: []oci.ErrorItem{{Code: oci.CodeManifestUnknown, Message: "m"}}}, 404, oci.CodeManifestUnknown, ""},
		{"upstream 404 without body", &upstream.Error{Status: 404}, 404, oci.CodeNameUnknown, ""},
		{"upstream 401: the mirror's credentials", &upstream.Error{Status: 401}, 403, oci.CodeDenied, ""},
		{"upstream 403", &upstream.Error{Status: 403}, 403, oci.CodeDenied, ""},
		{"upstream 429", &upstream.Error{Status: 429, RetryAfter: "30"}, 429, oci.CodeTooManyRequests, "30"},
		{"upstream 500", &upstream.Error{Status: 500}, 502, oci.CodeUnavailable, ""},
		{"upstream 503 with retry", &upstream.Error{Status: 503, RetryAfter: "5"}, 502, oci.CodeUnavailable, "5"},
		{"upstream 504", &upstream.Error{Status: 504}, 504, oci.CodeUnavailable, ""},
		{"unreachable", fmt.Errorf("get: %w", upstream.ErrUnavailable), 502, oci.CodeUnavailable, ""},
		{"stalled", fmt.Errorf("read: %w", upstream.ErrStalled), 504, oci.CodeUnavailable, ""},
		{"deadline", context.DeadlineExceeded, 504, oci.CodeUnavailable, ""},
		{"net timeout", fmt.Errorf("dial: %w", timeoutError{}), 504, oci.CodeUnavailable, ""},
		{"digest mismatch", fmt.Errorf("fill: %w", cache.ErrDigestMismatch), 502, oci.CodeUnavailable, ""},
		{"size mismatch", cache.ErrSizeMismatch, 502, oci.CodeUnavailable, ""},
		{"bad upstream", badUpstream("manifest is not JSON"), 502, oci.CodeUnavailable, ""},
		{"upstream body cut short", fmt.Errorf("fill: %w", upstreamBodyError(io.ErrUnexpectedEOF)), 502, oci.CodeUnavailable, ""},
		{"upstream body stalled", fmt.Errorf("fill: %w", upstreamBodyError(upstream.ErrStalled)), 504, oci.CodeUnavailable, ""},
		{"upstream body interrupted", fmt.Errorf("reading manifest: %w", fmt.Errorf("upstream x: %w: %w", upstream.ErrInterrupted, io.ErrUnexpectedEOF)), 502, oci.CodeUnavailable, ""},
		{"every upstream slot taken", fmt.Errorf("x: %w", errBusy), 503, oci.CodeUnavailable, "10"},
		{"internal address refused", fmt.Errorf("x: %w: %w", upstream.ErrUnavailable, upstream.ErrInternalAddress), 502, oci.CodeUnavailable, ""},
		{"closed", cache.ErrClosed, 503, oci.CodeUnavailable, ""},
		{"anything else", errors.New("boom"), 500, oci.CodeUnknown, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := toOCI(tc.err)
			if got.Status != tc.status || got.Code() != tc.code || got.RetryAfter != tc.retryAfter {
				t.Errorf("toOCI(%v) = %d %s retry %q, want %d %s retry %q",
					tc.err, got.Status, got.Code(), got.RetryAfter, tc.status, tc.code, tc.retryAfter)
			}
		})
	}
}

func TestStaleAllowed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"unreachable", upstream.ErrUnavailable, true},
		{"timeout", context.DeadlineExceeded, true},
		{"5xx", &upstream.Error{Status: 503}, true},
		{"429", &upstream.Error{Status: 429}, true},
		{"404 is an answer", &upstream.Error{Status: 404}, false},
		{"401 is an answer", &upstream.Error{Status: 401}, false},
		{"client gone", context.Canceled, false},
		{"body interrupted", fmt.Errorf("x: %w", upstream.ErrInterrupted), true},
		{"bad upstream answer", badUpstream("not JSON"), true},
		{"digest mismatch", cache.ErrDigestMismatch, true},
		{"every upstream slot taken", errBusy, true},
		{"pull budget held", &upstream.HeldError{}, true},
		{"internal error", errors.New("boom"), false},
	}
	for _, tc := range tests {
		if got := staleAllowed(tc.err); got != tc.want {
			t.Errorf("staleAllowed(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAcceptHelpers(t *testing.T) {
	all := oci.ManifestMediaTypes
	tests := []struct {
		name      string
		accept    []string
		want      []string
		canonical bool
	}{
		{"no accept", nil, all, true},
		{"wildcard", []string{"*/*"}, all, true},
		{"docker only", []string{oci.MediaTypeDockerManifest}, []string{oci.MediaTypeDockerManifest}, false},
		{"wildcard without the index", []string{oci.MediaTypeOCIIndex + ";q=0, */*"},
			[]string{oci.MediaTypeDockerManifestList, oci.MediaTypeOCIManifest, oci.MediaTypeDockerManifest}, false},
		{"several headers", []string{oci.MediaTypeOCIIndex + ", " + oci.MediaTypeOCIManifest, oci.MediaTypeDockerManifestList + "," + oci.MediaTypeDockerManifest},
			[]string{oci.MediaTypeOCIIndex, oci.MediaTypeOCIManifest, oci.MediaTypeDockerManifestList, oci.MediaTypeDockerManifest}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := upstreamAccept(tc.accept)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("upstreamAccept(%q) = %q, want %q", tc.accept, got, tc.want)
			}
			if c := coversAllManifestTypes(got); c != tc.canonical {
				t.Errorf("coversAllManifestTypes(%q) = %v, want %v", got, c, tc.canonical)
			}
		})
	}
}

func TestContentMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"application/vnd.oci.image.index.v1+json": "application/vnd.oci.image.index.v1+json",
		"application/json; charset=utf-8":         "application/json",
		"":                                        "",
		"not a media type;;":                      "",
	} {
		if got := contentMediaType(in); got != want {
			t.Errorf("contentMediaType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnknownCode(t *testing.T) {
	for kind, want := range map[oci.Kind]oci.Code{
		oci.KindManifest: oci.CodeManifestUnknown, oci.KindBlob: oci.CodeBlobUnknown,
		oci.KindTags: oci.CodeNameUnknown, oci.KindReferrers: oci.CodeNameUnknown,
	} {
		if got := unknownCode(kind); got != want {
			t.Errorf("unknownCode(%s) = %s, want %s", kind, got, want)
		}
	}
}

// upstreamBodyError returns the error an upstreamBody reports for err.
func upstreamBodyError(err error) error {
	_, got := upstreamBody{io.NopCloser(errReader{err})}.Read(make([]byte, 1))
	return got
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
