package s3tier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
)

// leaseRecord is the content of a fill's lease object.
type leaseRecord struct {
	// ID names this holding of the lease; the fill's chunks live under it.
	ID string `json:"id"`
	// Node names the holder, for operators.
	Node string `json:"node"`
	// Started is set once the upstream answered; Size and MediaType are
	// known from then on.
	Started bool `json:"started"`
	// Size is the content length, -1 when the upstream did not say.
	Size int64 `json:"size"`
	// MediaType is the content's media type.
	MediaType string `json:"media_type,omitempty"`
	// TTLMillis is how long the lease lasts after its last write.
	TTLMillis int64 `json:"ttl_ms"`
	// ChunkSize is the size of the fill's chunks, which followers use to
	// find an offset: nodes may be configured with different sizes.
	ChunkSize int64 `json:"chunk_size,omitempty"`
}

// lease is a lease held by this node, renewed until released: of the
// fill of a digest (d set; its chunks go with it), or of a task named by
// its key.
type lease struct {
	t   *Tier
	key string
	d   digest.Digest // empty for a task's lease
	mu  sync.Mutex
	rec leaseRecord // under mu
	// etag is the lease object's ETag after our last write; under mu.
	etag string
	lost bool // another node took it over; under mu
	// replaced is the ID of the expired lease this one took over, whose
	// chunks go with this one's.
	replaced string
	stop     chan struct{}
	wg       sync.WaitGroup
}

// nodeName names this process in lease records.
var nodeName = func() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", h, os.Getpid())
}()

// newID returns a random identifier.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fillPrefix is the prefix of the keys of d's fill.
func (t *Tier) fillPrefix(d digest.Digest) string {
	return t.cfg.Prefix + "fills/" + string(d.Algorithm()) + "/" + d.Encoded() + "/"
}

// leaseKey is the key of d's lease.
func (t *Tier) leaseKey(d digest.Digest) string { return t.fillPrefix(d) + "lease" }

// chunkKey is the key of chunk n of the fill of d under lease id.
func (t *Tier) chunkKey(d digest.Digest, id string, n int64) string {
	return fmt.Sprintf("%s%s/%08d", t.fillPrefix(d), id, n)
}

// putLease writes the lease record at key: only if no lease exists when
// ifMatch is empty, else only over the lease whose ETag is ifMatch. It
// returns the new ETag.
func (t *Tier) putLease(ctx context.Context, key string, rec leaseRecord, ifMatch string) (string, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	if ifMatch == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(ifMatch)
	}
	info, err := t.client.PutObject(ctx, t.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		return "", err
	}
	return info.ETag, nil
}

// readLease returns the lease record at key, its ETag and whether it
// expired: its last write by the store's clock (Last-Modified) plus its
// TTL, against this node's clock, so the two must agree. A missing
// lease wraps cache.ErrNotFound.
func (t *Tier) readLease(ctx context.Context, key string) (leaseRecord, string, bool, error) {
	body, info, _, err := t.core.GetObject(ctx, t.cfg.Bucket, key, minio.GetObjectOptions{})
	if err = t.check("get lease", err); err != nil {
		return leaseRecord{}, "", false, err
	}
	defer body.Close()
	var rec leaseRecord
	if err := json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&rec); err != nil {
		// A torn or foreign record counts as expired: it is taken over.
		return leaseRecord{}, info.ETag, true, nil
	}
	ttl := time.Duration(rec.TTLMillis) * time.Millisecond
	// Last-Modified has whole seconds: allow one more.
	expired := t.cfg.Now().After(info.LastModified.Add(ttl + time.Second))
	return rec, info.ETag, expired, nil
}

// acquire takes the lease at key (of d's fill, or of a task when d is
// empty), taking over an expired one. When another node holds a live
// lease it returns that lease's record instead.
func (t *Tier) acquire(ctx context.Context, key string, d digest.Digest) (*lease, *leaseRecord, error) {
	// A plain error of the store (a 500 of one request) is retried after
	// a pause; an unreachable store is not.
	var lastErr error
	retry := func(err error) error {
		if errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		lastErr = err
		return nil
	}
	for attempt := range 5 {
		if attempt > 0 && lastErr != nil {
			if err := t.pause(ctx, nil); err != nil {
				return nil, nil, err
			}
		}
		lastErr = nil
		rec := leaseRecord{ID: newID(), Node: nodeName, Size: -1, TTLMillis: t.cfg.LeaseTTL.Milliseconds(), ChunkSize: t.cfg.ChunkSize}
		etag, err := t.putLease(ctx, key, rec, "")
		if err == nil {
			return t.startLease(key, d, rec, etag), nil, nil
		}
		if !isConflict(err) {
			if err := retry(t.check("create lease", err)); err != nil {
				return nil, nil, err
			}
			continue
		}
		cur, curETag, expired, err := t.readLease(ctx, key)
		if errors.Is(err, cache.ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			if err := retry(err); err != nil {
				return nil, nil, err
			}
			continue
		}
		if !expired {
			return nil, &cur, nil
		}
		etag, err = t.putLease(ctx, key, rec, curETag)
		if err == nil {
			t.log.Warn("took over the lease of a node that stopped renewing it",
				zap.String("key", key), zap.String("node", cur.Node))
			t.counters.takeOvers.Add(1)
			l := t.startLease(key, d, rec, etag)
			l.replaced = cur.ID
			return l, nil, nil
		}
		if !isConflict(err) {
			if err := retry(t.check("take over lease", err)); err != nil {
				return nil, nil, err
			}
		}
	}
	if lastErr != nil {
		return nil, nil, fmt.Errorf("s3 lease %s: %w", key, lastErr)
	}
	return nil, nil, fmt.Errorf("s3 lease %s: contended", key)
}

// startLease starts renewing a lease just written.
func (t *Tier) startLease(key string, d digest.Digest, rec leaseRecord, etag string) *lease {
	l := &lease{t: t, key: key, d: d, rec: rec, etag: etag, stop: make(chan struct{})}
	l.wg.Add(1)
	go l.renewLoop()
	return l
}

// renewLoop rewrites the lease at a third of its TTL until released or
// lost.
func (l *lease) renewLoop() {
	defer l.wg.Done()
	tick := time.NewTicker(l.t.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		if !l.write() {
			return
		}
	}
}

// write rewrites the lease with its current record; it reports false once
// the lease is lost.
func (l *lease) write() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.t.cfg.LeaseTTL/3)
	defer cancel()
	etag, err := l.t.putLease(ctx, l.key, l.rec, l.etag)
	switch {
	case err == nil:
		l.etag = etag
	case isConflict(err):
		l.lost = true
		l.t.log.Warn("lost a lease to another node", zap.String("key", l.key))
		return false
	default:
		l.t.log.Warn("renewing a lease", zap.String("key", l.key), zap.Error(l.t.check("renew lease", err)))
	}
	return true
}

// started records the content's size and media type in the lease, for
// the nodes that follow the fill.
func (l *lease) started(size int64, mediaType string, chunkSize int64) {
	l.mu.Lock()
	l.rec.Started, l.rec.Size, l.rec.MediaType, l.rec.ChunkSize = true, size, mediaType, chunkSize
	l.mu.Unlock()
	l.write()
}

// release stops renewing the lease, removes it unless another node took
// it over, and removes the chunks of a fill's lease.
func (l *lease) release(ctx context.Context) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	lost, id := l.lost, l.rec.ID
	l.mu.Unlock()
	t := l.t
	if !t.Available() {
		// Unreachable: the lease expires on its own, and the lifecycle
		// rules of the bucket remove the chunks.
		return
	}
	if !lost {
		if cur, _, _, err := t.readLease(ctx, l.key); err == nil && cur.ID == id {
			if err := t.client.RemoveObject(ctx, t.cfg.Bucket, l.key, minio.RemoveObjectOptions{}); err != nil {
				t.log.Warn("removing a lease", zap.String("key", l.key), zap.Error(err))
			}
		}
	}
	if l.d == "" {
		return
	}
	t.removeChunks(ctx, l.d, id)
	if l.replaced != "" {
		t.removeChunks(ctx, l.d, l.replaced)
	}
}

// removeChunks removes the chunks of the fill of d under lease id.
func (t *Tier) removeChunks(ctx context.Context, d digest.Digest, id string) {
	listed := t.client.ListObjects(ctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: t.fillPrefix(d) + id + "/", Recursive: true})
	objs := make(chan minio.ObjectInfo)
	go func() {
		defer close(objs)
		for o := range listed {
			if o.Err != nil {
				t.log.Warn("listing a fill's chunks", zap.String("digest", d.String()), zap.Error(o.Err))
				continue
			}
			objs <- o
		}
	}()
	for e := range t.client.RemoveObjects(ctx, t.cfg.Bucket, objs, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			t.log.Warn("removing a fill's chunk", zap.String("key", e.ObjectName), zap.Error(e.Err))
		}
	}
}
