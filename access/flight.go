package access

import (
	"context"
	"sync"
)

// Flight lets concurrent callers with the same key share one call, the way
// golang.org/x/sync/singleflight does, but with a caller context: a caller
// that gives up stops waiting without cancelling the shared call, which
// runs on a context detached from every caller. Its keys are Keys, so a
// call made for one identity is never shared with another. The zero
// Flight is ready to use.
type Flight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[Key[K]]*flightCall[V]
}

type flightCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// Do runs fn once for every concurrent caller of key and returns its
// result, or ctx's error when ctx ends first.
func (f *Flight[K, V]) Do(ctx context.Context, key Key[K], fn func(context.Context) (V, error)) (V, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[Key[K]]*flightCall[V])
	}
	c, ok := f.calls[key]
	if !ok {
		c = &flightCall[V]{done: make(chan struct{})}
		f.calls[key] = c
		go func() {
			c.val, c.err = fn(context.WithoutCancel(ctx))
			f.mu.Lock()
			delete(f.calls, key)
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
