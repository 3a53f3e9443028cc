package mirror

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// errBadUpstream marks an upstream answer regcache refuses to pass on: a
// wrong status, a body over a limit, invalid JSON, a digest mismatch.
var errBadUpstream = errors.New("bad upstream answer")

// badUpstream returns an error wrapping errBadUpstream.
func badUpstream(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadUpstream, fmt.Sprintf(format, args...))
}

// unknownCode is the code of a 404 for what a route addresses, used when
// the upstream's 404 carried no code (HEADs, CDN answers).
func unknownCode(kind oci.Kind) oci.Code {
	switch kind {
	case oci.KindManifest:
		return oci.CodeManifestUnknown
	case oci.KindBlob:
		return oci.CodeBlobUnknown
	}
	return oci.CodeNameUnknown
}

// writeRouteError writes err for a request to route: like writeError, but
// an upstream 404 without a code gets the code of what the route addresses,
// and a client without credentials of its own whom the upstream refused is
// challenged to log in to the mirror.
func (m *Mirror) writeRouteError(w http.ResponseWriter, r *http.Request, route oci.Route, t target, err error) {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Status == http.StatusNotFound && len(ue.Items) == 0 {
		err = oci.Errorf(http.StatusNotFound, unknownCode(route.Kind), "%s unknown to the upstream registry %s", route.Kind, ue.Upstream)
	}
	if ue, ok := refusal(err); ok && !t.cred.Own() {
		if chs := m.challenges(r, route.Name); chs != nil {
			e := oci.Errorf(http.StatusUnauthorized, oci.CodeUnauthorized,
				"the upstream registry %s refuses anonymous pulls of this repository: log in to this mirror with credentials for it", ue.Upstream)
			e.Challenges = chs
			err = e
		}
	}
	m.writeError(w, r, err)
}

// writeError maps err to its OCI error and writes it; the one place where
// internal errors become responses. A client that went away gets nothing.
func (m *Mirror) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		m.log.Debug("client went away", zap.String("path", r.URL.Path), zap.Error(err))
		return
	}
	oe := toOCI(err)
	switch {
	case oe.Status >= 500:
		// An upstream outage fails many requests: one line per episode.
		m.failLog.Event(zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", oe.Status), zap.Error(err))
	default:
		if ce := m.log.Check(zap.DebugLevel, "request refused"); ce != nil {
			ce.Write(zap.String("method", r.Method), zap.String("path", r.URL.Path),
				zap.Int("status", oe.Status), zap.Error(err))
		}
	}
	oe.Write(w, r)
}

// toOCI maps an internal error to the OCI error a client receives: the
// upstream's own answer for its 4xx, 429 with Retry-After (also when the
// pull budget held back the request), 504 for a timeout, 502 for any other upstream failure, 500 for the rest. Messages
// never carry credentials (upstream errors never contain them).
func toOCI(err error) *oci.Error {
	var oe *oci.Error
	if errors.As(err, &oe) {
		return oe
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		return fromUpstream(ue)
	}
	var he *upstream.HeldError
	if errors.As(err, &he) {
		return heldToOCI(he)
	}
	switch {
	case errors.Is(err, cache.ErrDigestMismatch), errors.Is(err, cache.ErrSizeMismatch):
		return oci.Errorf(http.StatusBadGateway, oci.CodeUnavailable, "the upstream sent content that does not match its digest or size")
	case isTimeout(err):
		return oci.Errorf(http.StatusGatewayTimeout, oci.CodeUnavailable, "the upstream registry did not answer in time")
	case errors.Is(err, errBadUpstream):
		return oci.Errorf(http.StatusBadGateway, oci.CodeUnavailable, "%s", err.Error())
	case errors.Is(err, upstream.ErrInterrupted):
		return oci.Errorf(http.StatusBadGateway, oci.CodeUnavailable, "the upstream registry's answer broke off")
	case errors.Is(err, upstream.ErrInternalAddress):
		return oci.Errorf(http.StatusBadGateway, oci.CodeUnavailable,
			"the upstream registry sent the mirror to an internal address, which it does not connect to")
	case errors.Is(err, upstream.ErrUnavailable):
		return oci.Errorf(http.StatusBadGateway, oci.CodeUnavailable, "the upstream registry is unreachable")
	case errors.Is(err, errBusy), errors.Is(err, cache.ErrBusy):
		e := oci.Errorf(http.StatusServiceUnavailable, oci.CodeUnavailable, "too many downloads in progress; retry shortly")
		e.RetryAfter = "10"
		return e
	case errors.Is(err, cache.ErrClosed):
		return oci.Errorf(http.StatusServiceUnavailable, oci.CodeUnavailable, "the cache is shutting down")
	}
	return oci.Errorf(http.StatusInternalServerError, oci.CodeUnknown, "internal error")
}

// fromUpstream maps an upstream's error answer.
func fromUpstream(ue *upstream.Error) *oci.Error {
	items := ue.Items
	switch {
	case ue.Status == http.StatusTooManyRequests:
		e := &oci.Error{Status: http.StatusTooManyRequests, Items: items, RetryAfter: ue.RetryAfter}
		if len(e.Items) == 0 {
			e.Items = []oci.ErrorItem{{Code: oci.CodeTooManyRequests, Message: "the upstream registry's rate limit is exhausted"}}
		}
		return e
	case ue.Status == http.StatusUnauthorized:
		// The mirror's own credentials were refused: a client could not act
		// on a 401 (there is no challenge it could answer).
		return oci.Errorf(http.StatusForbidden, oci.CodeDenied,
			"the upstream registry %s refused access: the repository does not exist or needs credentials", ue.Upstream)
	case ue.Status == http.StatusForbidden:
		return oci.Errorf(http.StatusForbidden, oci.CodeDenied,
			"the upstream registry %s denied access to this repository", ue.Upstream)
	case ue.Status >= 400 && ue.Status < 500:
		if len(items) == 0 {
			items = []oci.ErrorItem{{Code: codeForStatus(ue.Status), Message: fmt.Sprintf("the upstream registry %s answered %d", ue.Upstream, ue.Status)}}
		}
		return &oci.Error{Status: ue.Status, Items: items}
	case ue.Status == http.StatusGatewayTimeout:
		return oci.Errorf(http.StatusGatewayTimeout, oci.CodeUnavailable, "the upstream registry %s timed out", ue.Upstream)
	default:
		e := oci.Errorf(http.StatusBadGateway, oci.CodeUnavailable, "the upstream registry %s answered %d", ue.Upstream, ue.Status)
		e.RetryAfter = ue.RetryAfter
		return e
	}
}

// codeForStatus picks a code for an upstream 4xx that carried none.
func codeForStatus(status int) oci.Code {
	switch status {
	case http.StatusNotFound:
		return oci.CodeNameUnknown
	case http.StatusBadRequest:
		return oci.CodeNameInvalid
	case http.StatusMethodNotAllowed:
		return oci.CodeUnsupported
	}
	return oci.CodeUnknown
}

// isTimeout reports whether err is a timeout of the upstream.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, upstream.ErrStalled) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// staleAllowed reports whether a failed revalidation may be answered with
// the last known digest: whenever the failure maps to 502, 503 or 504 (the
// upstream was unreachable, timed out, failed, broke off or sent what
// cannot be used, or every upstream slot was taken) or to 429 (the upstream
// rate-limited us, or the pull budget held back the GET a moved tag
// needed). A 404, 401 or 403 is an answer, not a failure, and is passed
// on; the client's own cancellation is neither.
func staleAllowed(err error) bool {
	if errors.Is(err, context.Canceled) && !isTimeout(err) {
		return false
	}
	switch toOCI(err).Status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}
