package oci

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestErrorWrite(t *testing.T) {
	tests := []struct {
		name       string
		err        *Error
		method     string
		wantStatus int
		wantCode   Code
		wantBody   bool
	}{
		{"get", Errorf(0, CodeBlobUnknown, "blob %s unknown", "x"), http.MethodGet, 404, CodeBlobUnknown, true},
		{"head has no body", Errorf(0, CodeManifestUnknown, "m"), http.MethodHead, 404, CodeManifestUnknown, false},
		{"explicit status", Errorf(502, CodeUnavailable, "down"), http.MethodGet, 502, CodeUnavailable, true},
		{"retry after", &Error{Status: 429, Items: []ErrorItem{{Code: CodeTooManyRequests, Message: "slow"}}, RetryAfter: "30"}, http.MethodGet, 429, CodeTooManyRequests, true},
		{"challenge", &Error{Status: 401, Items: []ErrorItem{{Code: CodeUnauthorized, Message: "log in"}}, Challenges: []string{`Bearer realm="https://m/v2/_token"`, `Basic realm="regcache"`}}, http.MethodGet, 401, CodeUnauthorized, true},
		{"no items", &Error{Status: 500}, http.MethodGet, 500, CodeUnknown, true},
		{"unencodable detail", Errorf(0, CodeDenied, "no").WithDetail(func() {}), http.MethodGet, 403, CodeDenied, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			w.Header().Set(ContentDigestHeader, digestA)
			tc.err.Write(w, httptest.NewRequest(tc.method, "/v2/", nil))
			if w.Code != tc.wantStatus {
				t.Errorf("status %d, want %d", w.Code, tc.wantStatus)
			}
			h := w.Header()
			if h.Get(APIVersionHeader) != APIVersion || h.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("headers %v", h)
			}
			if h.Get(ContentDigestHeader) != "" {
				t.Errorf("%s kept on an error: %q", ContentDigestHeader, h.Get(ContentDigestHeader))
			}
			if got := h.Values("Www-Authenticate"); !slices.Equal(got, tc.err.Challenges) {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.err.Challenges)
			}
			if h.Get("Retry-After") != tc.err.RetryAfter {
				t.Errorf("Retry-After %q, want %q", h.Get("Retry-After"), tc.err.RetryAfter)
			}
			if !tc.wantBody {
				if w.Body.Len() != 0 {
					t.Errorf("HEAD got a body: %q", w.Body)
				}
				return
			}
			var body ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != tc.wantCode {
				t.Errorf("body %s (%v), want one %s item", w.Body, err, tc.wantCode)
			}
		})
	}
}

func TestCodeStatus(t *testing.T) {
	tests := []struct {
		code Code
		want int
	}{
		{CodeBlobUnknown, 404}, {CodeManifestUnknown, 404}, {CodeNameUnknown, 404},
		{CodeDigestInvalid, 400}, {CodeManifestInvalid, 400}, {CodeNameInvalid, 400}, {CodeSizeInvalid, 400}, {CodeTagInvalid, 400},
		{CodeUnauthorized, 401}, {CodeDenied, 403}, {CodeUnsupported, 405}, {CodeTooManyRequests, 429},
		{CodeUnavailable, 503}, {CodeUnknown, 500}, {Code("SOMETHING_ELSE"), 500},
	}
	for _, tc := range tests {
		if got := tc.code.Status(); got != tc.want {
			t.Errorf("%s.Status() = %d, want %d", tc.code, got, tc.want)
		}
	}
}

func TestErrorAccessors(t *testing.T) {
	e := Errorf(0, CodeTagInvalid, "tag %q", "x")
	if e.Status != 400 || e.Code() != CodeTagInvalid || e.Error() != `TAG_INVALID: tag "x" (status 400)` {
		t.Errorf("Errorf = %+v, %q", e, e.Error())
	}
	empty := &Error{Status: 502}
	if empty.Code() != CodeUnknown || empty.Error() != "registry error: status 502" {
		t.Errorf("empty error: %s, %q", empty.Code(), empty.Error())
	}
	if empty.WithDetail("x") != empty || len(empty.Items) != 0 {
		t.Errorf("WithDetail on an empty error added items: %+v", empty.Items)
	}
}

func TestParseErrorBody(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Code
	}{
		{"two items, one codeless", `{"errors":[{"code":"DENIED","message":"no"},{"message":"codeless"}]}`, []Code{CodeDenied}},
		{"several", `{"errors":[{"code":"UNAUTHORIZED"},{"code":"NAME_UNKNOWN"}]}`, []Code{CodeUnauthorized, CodeNameUnknown}},
		{"html", "<html>", nil},
		{"no errors", `{}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items := ParseErrorBody([]byte(tc.body))
			if len(items) != len(tc.want) {
				t.Fatalf("ParseErrorBody(%s) = %+v, want codes %v", tc.body, items, tc.want)
			}
			for i, it := range items {
				if it.Code != tc.want[i] {
					t.Errorf("item %d code %s, want %s", i, it.Code, tc.want[i])
				}
			}
		})
	}
}
