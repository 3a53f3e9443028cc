package s3tier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
)

// taskKey is the key of the lease of the task named name.
func (t *Tier) taskKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return t.cfg.Prefix + "once/" + hex.EncodeToString(sum[:])
}

// Once runs run unless ready reports that the work is done: of the nodes
// that call it with one name at once, one runs the task under a lease
// while the others wait until ready reports true (then return nil) or the
// lease goes away (then one of them takes it and runs the task, unless
// ready). While the object store is unreachable, run runs at once.
func (t *Tier) Once(ctx context.Context, name string, ready func() bool, run func() error) error {
	key := t.taskKey(name)
	for {
		if !t.Available() {
			return run()
		}
		l, _, err := t.acquire(ctx, key, "")
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !errors.Is(err, ErrUnavailable) {
				t.log.Warn("running a task without the shared store's lease", zap.String("task", name), zap.Error(err))
			}
			return run()
		}
		if l != nil {
			defer func() {
				rctx, cancel := context.WithTimeout(context.Background(), 4*t.cfg.Timeout)
				defer cancel()
				l.release(rctx)
			}()
			if ready() {
				return nil
			}
			return run()
		}
		// Another node runs it: wait for its result or its end.
		for waiting := true; waiting; {
			if err := t.pause(ctx, nil); err != nil {
				return err
			}
			if ready() {
				return nil
			}
			_, _, expired, err := t.readLease(ctx, key)
			switch {
			case errors.Is(err, cache.ErrNotFound), err == nil && expired:
				waiting = false
			case err != nil:
				if !errors.Is(err, ErrUnavailable) {
					t.log.Warn("running a task without the shared store's lease", zap.String("task", name), zap.Error(err))
				}
				return run()
			}
		}
	}
}
