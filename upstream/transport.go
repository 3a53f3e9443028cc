package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Exchange kinds reported to Options.OnResponse.
const (
	kindRegistry = "registry"
	kindToken    = "token"
	kindRedirect = "redirect"
)

// maxRedirects bounds the redirects followed for one request.
const maxRedirects = 5

type hopKey struct{}

// hop describes the request a transport hop belongs to: what kind of
// exchange it is, which endpoint it serves, and the only origin that may
// receive its Authorization header.
type hop struct {
	kind     string
	endpoint string
	origin   *url.URL // scheme and host (with port) allowed to see auth; nil for none
	auth     string   // Authorization value for origin; may be empty
}

func withHop(ctx context.Context, h hop) context.Context {
	return context.WithValue(ctx, hopKey{}, h)
}

// sameOrigin reports whether u has the scheme and host (including the port)
// of origin.
func sameOrigin(u, origin *url.URL) bool {
	return origin != nil && strings.EqualFold(u.Scheme, origin.Scheme) && strings.EqualFold(u.Host, origin.Host)
}

// authTransport sets the Authorization header on each hop of a registry
// request (the first one and every redirect) only when the hop goes to the
// endpoint's own scheme, host and port, so that a redirect to a CDN, even on
// the same IP with another port, never receives it. It records rate-limit
// headers of registry answers and reports every exchange.
type authTransport struct {
	base   http.RoundTripper
	client *Client
}

// RoundTrip implements http.RoundTripper.
func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h, _ := req.Context().Value(hopKey{}).(hop)
	kind := h.kind
	if kind != kindToken {
		same := sameOrigin(req.URL, h.origin)
		if !same {
			kind = kindRedirect
		}
		want := ""
		if same {
			want = h.auth
		}
		if req.Header.Get("Authorization") != want {
			req = req.Clone(req.Context())
			req.Header.Del("Authorization")
			if want != "" {
				req.Header.Set("Authorization", want)
			}
		}
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if err == nil && kind == kindRegistry {
		t.client.noteRateLimit(resp.StatusCode, resp.Header)
	}
	if t.client.opts.OnResponse != nil {
		ex := Exchange{
			Upstream: t.client.cfg.Name,
			Endpoint: h.endpoint,
			Method:   req.Method,
			Kind:     kind,
			Duration: time.Since(start),
			Err:      err,
		}
		if resp != nil {
			ex.Status = resp.StatusCode
		}
		t.client.opts.OnResponse(ex)
	}
	return resp, err
}

// CloseIdleConnections closes the base transport's idle connections.
func (t *authTransport) CloseIdleConnections() {
	if ci, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// checkRedirect follows at most maxRedirects redirects. It never copies an
// Authorization header (authTransport sets it per hop) nor a Referer, and
// logs only the scheme, host and path of the target: its query may be a
// signature.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	req.Header.Del("Authorization")
	req.Header.Del("Referer")
	if ce := c.log.Check(zapcore.DebugLevel, "following upstream redirect"); ce != nil {
		ce.Write(zap.String("upstream", c.cfg.Name), zap.String("target", redactURL(req.URL)))
	}
	return nil
}

// redactURL returns scheme, host and path of u: no user info, no query.
func redactURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// stallBody fails a read that waits longer than the stall timeout for a
// byte, by cancelling the request, and releases the request when closed.
// The timer runs only while a Read is blocked, so a caller that is slow to
// read is never mistaken for a stalled upstream. onStall, when set, runs
// once when the body stalls.
type stallBody struct {
	rc io.ReadCloser
	// ep is the endpoint that answered, for Client.Demote.
	ep       *endpoint
	upstream string
	timeout  time.Duration
	timer    *time.Timer
	cancel   context.CancelFunc
	stalled  atomic.Bool
}

func newStallBody(rc io.ReadCloser, upstream string, timeout time.Duration, cancel context.CancelFunc, onStall func()) *stallBody {
	b := &stallBody{rc: rc, upstream: upstream, timeout: timeout, cancel: cancel}
	b.timer = time.AfterFunc(timeout, func() {
		b.stalled.Store(true)
		// Before the cancellation ends the blocked Read: its caller's
		// next request sees the stall's effects.
		if onStall != nil {
			onStall()
		}
		cancel()
	})
	b.timer.Stop()
	return b
}

// Read implements io.Reader.
func (b *stallBody) Read(p []byte) (int, error) {
	if b.stalled.Load() {
		return 0, b.stallError()
	}
	b.timer.Reset(b.timeout)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && !errors.Is(err, io.EOF) {
		if b.stalled.Load() {
			return n, b.stallError()
		}
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("upstream %s: %w: %w", b.upstream, ErrInterrupted, err)
		}
	}
	return n, err
}

// stallError is the error of a stalled body. It deliberately does not wrap
// the cancellation that aborted the request: callers must not mistake a
// stall for their own cancellation.
func (b *stallBody) stallError() error {
	return fmt.Errorf("upstream %s: %w: no byte for %s", b.upstream, ErrStalled, b.timeout)
}

// Close implements io.Closer.
func (b *stallBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// Interface guards
var (
	_ http.RoundTripper = (*authTransport)(nil)
	_ io.ReadCloser     = (*stallBody)(nil)
)
