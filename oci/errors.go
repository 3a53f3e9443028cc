package oci

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Header names and values every registry response uses.
const (
	// APIVersionHeader is sent on every /v2/ response.
	APIVersionHeader = "Docker-Distribution-API-Version"
	// APIVersion is the value of APIVersionHeader.
	APIVersion = "registry/2.0"
	// ContentDigestHeader carries the digest of a manifest or blob.
	ContentDigestHeader = "Docker-Content-Digest"
)

// Code is an error code of the OCI distribution spec (and the few the
// distribution registry adds).
type Code string

// The error codes regcache sends.
const (
	CodeBlobUnknown     Code = "BLOB_UNKNOWN"
	CodeDigestInvalid   Code = "DIGEST_INVALID"
	CodeManifestInvalid Code = "MANIFEST_INVALID"
	CodeManifestUnknown Code = "MANIFEST_UNKNOWN"
	CodeNameInvalid     Code = "NAME_INVALID"
	CodeNameUnknown     Code = "NAME_UNKNOWN"
	CodeSizeInvalid     Code = "SIZE_INVALID"
	CodeTagInvalid      Code = "TAG_INVALID"
	CodeUnauthorized    Code = "UNAUTHORIZED"
	CodeDenied          Code = "DENIED"
	CodeUnsupported     Code = "UNSUPPORTED"
	CodeTooManyRequests Code = "TOOMANYREQUESTS"
	CodeUnavailable     Code = "UNAVAILABLE"
	CodeUnknown         Code = "UNKNOWN"
)

// Status returns the HTTP status the spec pairs with c.
func (c Code) Status() int {
	switch c {
	case CodeBlobUnknown, CodeManifestUnknown, CodeNameUnknown:
		return http.StatusNotFound
	case CodeDigestInvalid, CodeManifestInvalid, CodeNameInvalid, CodeSizeInvalid, CodeTagInvalid:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeDenied:
		return http.StatusForbidden
	case CodeUnsupported:
		return http.StatusMethodNotAllowed
	case CodeTooManyRequests:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// ErrorItem is one entry of the OCI error body.
type ErrorItem struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// ErrorBody is the OCI error body: {"errors":[{"code","message","detail"}]}.
type ErrorBody struct {
	Errors []ErrorItem `json:"errors"`
}

// Error is a registry error with the status it is answered with. It is the
// error type the rest of regcache returns when a request must fail with a
// particular OCI code.
type Error struct {
	// Status is the HTTP status of the response.
	Status int
	// Items are the entries of the error body; at least one.
	Items []ErrorItem
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Challenges, when set, are sent as WWW-Authenticate headers of a
	// 401, one header each, such as `Basic realm="regcache"`.
	Challenges []string
}

// Errorf returns an *Error with one item of code and a formatted message,
// answered with status (or the code's own status when status is 0).
func Errorf(status int, code Code, format string, args ...any) *Error {
	if status == 0 {
		status = code.Status()
	}
	return &Error{Status: status, Items: []ErrorItem{{Code: code, Message: fmt.Sprintf(format, args...)}}}
}

// WithDetail sets the detail of the first item and returns e.
func (e *Error) WithDetail(detail any) *Error {
	if len(e.Items) > 0 {
		e.Items[0].Detail = detail
	}
	return e
}

// Code returns the code of the first item, or CodeUnknown.
func (e *Error) Code() Code {
	if len(e.Items) == 0 {
		return CodeUnknown
	}
	return e.Items[0].Code
}

// Error implements error.
func (e *Error) Error() string {
	if len(e.Items) == 0 {
		return "registry error: status " + strconv.Itoa(e.Status)
	}
	return fmt.Sprintf("%s: %s (status %d)", e.Items[0].Code, e.Items[0].Message, e.Status)
}

// Write sends e as the OCI error body with its status, the API version header
// and, when set, Retry-After. HEAD requests get the headers only.
func (e *Error) Write(w http.ResponseWriter, r *http.Request) {
	items := e.Items
	if len(items) == 0 {
		items = []ErrorItem{{Code: CodeUnknown, Message: http.StatusText(e.Status)}}
	}
	body, err := json.Marshal(ErrorBody{Errors: items})
	if err != nil {
		// Detail holds something JSON cannot encode: drop the details.
		plain := make([]ErrorItem, len(items))
		for i, it := range items {
			plain[i] = ErrorItem{Code: it.Code, Message: it.Message}
		}
		body, _ = json.Marshal(ErrorBody{Errors: plain})
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(APIVersionHeader, APIVersion)
	h.Del(ContentDigestHeader)
	if e.RetryAfter != "" {
		h.Set("Retry-After", e.RetryAfter)
	}
	h.Del("Www-Authenticate")
	for _, ch := range e.Challenges {
		h.Add("Www-Authenticate", ch)
	}
	w.WriteHeader(e.Status)
	if r == nil || r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// ParseErrorBody reads the items of an OCI error body. It tolerates bodies
// that are not OCI errors by returning nil.
func ParseErrorBody(body []byte) []ErrorItem {
	var b ErrorBody
	if err := json.Unmarshal(body, &b); err != nil {
		return nil
	}
	out := b.Errors[:0]
	for _, it := range b.Errors {
		if it.Code != "" {
			out = append(out, it)
		}
	}
	return out
}
