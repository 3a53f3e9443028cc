package s3tier

import (
	"context"
	"errors"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
)

// finishTimeout bounds publishing a verified fill: the upload of its
// content and the removal of its lease and chunks.
const finishTimeout = time.Hour

// Source opens the content of d for a local fill: the shared copy when
// the bucket has it; else, when another node holds d's lease, that node's
// fill, streamed chunk by chunk as it lands; else it takes the lease and
// returns fetch's upstream body, publishing it in chunks as it arrives
// and uploading the verified content when the fill is done. While the
// object store is unreachable it returns fetch's body as it is.
func (t *Tier) Source(ctx context.Context, d digest.Digest, fetch cache.FetchFunc) (cache.Source, error) {
	for {
		if !t.Available() {
			return t.alone(ctx, d, fetch, ErrUnavailable)
		}
		src, err := t.openShared(ctx, d, 0)
		if err == nil {
			t.counters.fromBucket.Add(1)
			if c := t.log.Check(zapcore.DebugLevel, "filling from the shared store"); c != nil {
				c.Write(zap.String("digest", d.String()), zap.Int64("bytes", src.Size))
			}
			return t.sharedCopy(ctx, d, fetch, src), nil
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return t.alone(ctx, d, fetch, err)
		}
		l, holder, err := t.acquire(ctx, t.leaseKey(d), d)
		if err != nil {
			return t.alone(ctx, d, fetch, err)
		}
		if l != nil {
			// The lease may be free because its last holder has just
			// shared the content: look again before downloading.
			if src, err := t.openShared(ctx, d, 0); err == nil {
				rctx, cancel := context.WithTimeout(context.Background(), 4*t.cfg.Timeout)
				l.release(rctx)
				cancel()
				t.counters.fromBucket.Add(1)
				return t.sharedCopy(ctx, d, fetch, src), nil
			}
			return t.publish(ctx, d, l, fetch)
		}
		src, ok, err := t.follow(ctx, d, *holder, fetch)
		if ok || err != nil {
			return src, err
		}
		// The holder went away before it started: try again.
	}
}

// alone is a fill that goes without the shared store, which failed with
// cause.
func (t *Tier) alone(ctx context.Context, d digest.Digest, fetch cache.FetchFunc, cause error) (cache.Source, error) {
	if ctx.Err() != nil {
		return cache.Source{}, ctx.Err()
	}
	t.counters.alone.Add(1)
	// While the store is known to be down this is expected (its outage was
	// logged once); otherwise it costs an upstream download of its own.
	level := zapcore.WarnLevel
	if errors.Is(cause, ErrUnavailable) {
		level = zapcore.DebugLevel
	}
	if c := t.log.Check(level, "filling without the shared store"); c != nil {
		c.Write(zap.String("digest", d.String()), zap.Error(cause))
	}
	return fetch(ctx, 0)
}

// openShared opens the shared copy of d from offset off.
func (t *Tier) openShared(ctx context.Context, d digest.Digest, off int64) (cache.Source, error) {
	opts := minio.GetObjectOptions{}
	if off > 0 {
		_ = opts.SetRange(off, 0)
	}
	body, info, _, err := t.core.GetObject(ctx, t.cfg.Bucket, t.blobKey(d), opts)
	if err = t.check("get", err); err != nil {
		return cache.Source{}, err
	}
	return cache.Source{Body: t.stallGuard(body), Size: info.Size, MediaType: info.ContentType}, nil
}

// sharedCopy wraps the body of the shared copy of d in a stream, so that
// a read that fails midway (the store died, or the object expired) goes on
// from the bucket again or from the upstream, where it stopped.
func (t *Tier) sharedCopy(ctx context.Context, d digest.Digest, fetch cache.FetchFunc, src cache.Source) cache.Source {
	s := t.newStream(ctx, d, fetch, src.Size, streamBucket)
	s.cur, s.curFinal, s.readShared = src.Body, true, true
	return cache.Source{Body: s, Size: src.Size, MediaType: src.MediaType, Done: s.done}
}

// publish starts the upstream fetch of d under lease l.
func (t *Tier) publish(ctx context.Context, d digest.Digest, l *lease, fetch cache.FetchFunc) (cache.Source, error) {
	src, err := fetch(ctx, 0)
	if err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), t.cfg.Timeout)
		defer cancel()
		l.release(rctx)
		return cache.Source{}, err
	}
	l.started(src.Size, src.MediaType, t.cfg.ChunkSize)
	t.counters.published.Add(1)
	s := t.newStream(ctx, d, fetch, src.Size, streamLeading)
	s.up, s.lease, s.publishing = src.Body, l, true
	if c := t.log.Check(zapcore.DebugLevel, "filling from the upstream for every node"); c != nil {
		c.Write(zap.String("digest", d.String()), zap.Int64("bytes", src.Size))
	}
	return cache.Source{Body: s, Size: src.Size, MediaType: src.MediaType, Done: s.done}, nil
}

// follow streams the fill of d that the holder of rec runs, once it has
// started. It reports false when the lease went away or expired before
// the fill started.
func (t *Tier) follow(ctx context.Context, d digest.Digest, rec leaseRecord, fetch cache.FetchFunc) (cache.Source, bool, error) {
	for !rec.Started {
		if err := t.pause(ctx, nil); err != nil {
			return cache.Source{}, false, err
		}
		if src, err := t.openShared(ctx, d, 0); err == nil {
			t.counters.fromBucket.Add(1)
			return t.sharedCopy(ctx, d, fetch, src), true, nil
		}
		cur, _, expired, err := t.readLease(ctx, t.leaseKey(d))
		if errors.Is(err, cache.ErrNotFound) || err == nil && expired {
			return cache.Source{}, false, nil
		}
		if err != nil {
			src, err := t.alone(ctx, d, fetch, err)
			return src, true, err
		}
		rec = cur
	}
	if c := t.log.Check(zapcore.DebugLevel, "following another node's fill"); c != nil {
		c.Write(zap.String("digest", d.String()), zap.String("node", rec.Node), zap.Int64("bytes", rec.Size))
	}
	t.counters.followed.Add(1)
	s := t.newStream(ctx, d, fetch, rec.Size, streamBucket)
	s.follow(rec)
	return cache.Source{Body: s, Size: rec.Size, MediaType: rec.MediaType, Done: s.done}, true, nil
}

// pause waits for the poll interval, ctx, or stop.
func (t *Tier) pause(ctx context.Context, stop <-chan struct{}) error {
	timer := time.NewTimer(t.cfg.PollInterval)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errStreamClosed
	}
}
