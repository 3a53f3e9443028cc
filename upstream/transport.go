package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

type authKey struct{}
type kindKey struct{}

// authInfo is the Authorization of one request and the only origin that
// may receive it.
type authInfo struct {
	scheme, host string
	header       string
	endpoint     string
}

func withAuth(ctx context.Context, a authInfo) context.Context {
	return context.WithValue(ctx, authKey{}, a)
}

func withKind(ctx context.Context, kind string) context.Context {
	return context.WithValue(ctx, kindKey{}, kind)
}

// authTransport adds the Authorization header to each hop of a request
// (the first and every redirect) only when the hop goes to the endpoint's
// own scheme, host and port, so that a redirect to a CDN, even on the same
// IP with another port, never receives it. It also reports exchanges.
type authTransport struct {
	base   http.RoundTripper
	client *Client
}

// RoundTrip implements http.RoundTripper.
func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	kind, _ := req.Context().Value(kindKey{}).(string)
	ai, hasAuth := req.Context().Value(authKey{}).(authInfo)
	sameOrigin := hasAuth && req.URL.Scheme == ai.scheme && req.URL.Host == ai.host
	if hasAuth && !sameOrigin && kind == "registry" {
		kind = "redirect"
	}
	if req.Header.Get("Authorization") != "" && kind != "token" || (hasAuth && sameOrigin && ai.header != "") {
		req = req.Clone(req.Context())
		req.Header.Del("Authorization")
		if sameOrigin && ai.header != "" {
			req.Header.Set("Authorization", ai.header)
		}
	}
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if t.client.onResponse != nil {
		ex := Exchange{Upstream: t.client.cfg.Name, Endpoint: ai.endpoint, Method: req.Method, Kind: kind,
			Duration: time.Since(start), Err: err}
		if resp != nil {
			ex.Status = resp.StatusCode
		}
		t.client.onResponse(ex)
	}
	return resp, err
}

// maxRedirects bounds the redirects followed for one request.
const maxRedirects = 5

// checkRedirect follows at most maxRedirects redirects and never copies
// an Authorization header (authTransport adds it per hop).
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return errors.New("too many redirects")
	}
	req.Header.Del("Authorization")
	return nil
}

// stallBody fails a body that delivers no byte for the stall timeout, by
// cancelling its request, and releases the request when closed.
type stallBody struct {
	rc      io.ReadCloser
	timeout time.Duration
	timer   *time.Timer
	cancel  context.CancelFunc

	mu      sync.Mutex
	stalled bool
}

func newStallBody(rc io.ReadCloser, timeout time.Duration, cancel context.CancelFunc) *stallBody {
	b := &stallBody{rc: rc, timeout: timeout, cancel: cancel}
	b.timer = time.AfterFunc(timeout, func() {
		b.mu.Lock()
		b.stalled = true
		b.mu.Unlock()
		cancel()
	})
	return b
}

// Read implements io.Reader.
func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.timeout)
	}
	if err != nil && err != io.EOF {
		b.mu.Lock()
		stalled := b.stalled
		b.mu.Unlock()
		if stalled {
			return n, errors.Join(ErrStalled, err)
		}
	}
	return n, err
}

// Close implements io.Closer.
func (b *stallBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}
