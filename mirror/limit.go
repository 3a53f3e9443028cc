package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/regcache/regcache/upstream"
)

// DefaultMaxUpstreamRequests bounds the upstream requests for manifests,
// access checks and lists that run at once when
// Config.MaxUpstreamRequests is zero. Each holds at most one manifest (4
// MiB) or list (16 MiB) in memory, so a flood of distinct cold requests
// costs a bounded amount of memory and connections.
const DefaultMaxUpstreamRequests = 64

// upstreamQueueTimeout is how long a request waits for a free upstream
// slot before it is answered 503 with a Retry-After.
const upstreamQueueTimeout = 30 * time.Second

// errBusy is the answer to a request that found every upstream slot taken
// for too long.
var errBusy = errors.New("too many upstream requests in progress")

// limiter bounds concurrent work with a semaphore and a queue timeout.
type limiter struct {
	slots chan struct{}
	wait  time.Duration
}

// newLimiter returns a limiter of n slots whose waiters give up after wait.
func newLimiter(n int, wait time.Duration) *limiter {
	return &limiter{slots: make(chan struct{}, n), wait: wait}
}

// acquire takes a slot, waiting for one for at most the queue timeout (an
// error wrapping errBusy) or until ctx ends. The caller releases it.
func (l *limiter) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %d at once", errBusy, cap(l.slots))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives a slot back.
func (l *limiter) release() { <-l.slots }

// upstreamDo sends req to t's upstream in one of the mirror's upstream
// slots, which the response holds until its body is closed.
func (m *Mirror) upstreamDo(ctx context.Context, t target, req upstream.Request) (*http.Response, error) {
	if err := m.upstreamSlots.acquire(ctx); err != nil {
		return nil, err
	}
	resp, err := t.do(ctx, req)
	if err != nil {
		m.upstreamSlots.release()
		return nil, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: m.upstreamSlots.release}
	return resp, nil
}

// slotBody releases its slot once, when closed.
type slotBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// inUse returns the slots taken.
func (l *limiter) inUse() int { return len(l.slots) }
