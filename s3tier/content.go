package s3tier

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
)

// Content is a node's content store shared through the tier: a manifest
// missing on the local disk is read from the bucket (verified, then kept
// on the disk), content new to the disk is written through to it, the
// bucket's copies count as held elsewhere, and tasks run once among the
// nodes. Fills reach the bucket through the store's own source provider
// (cache.Options.Sources = the Tier). Every other method is the store's.
// The bucket's errors never fail a call that the disk or the upstream can
// answer.
type Content struct {
	*cache.Store
	tier *Tier
	log  *zap.Logger
}

// Content returns store wrapped by the tier. The store should take its
// fills' sources from the tier (cache.Options.Sources).
func (t *Tier) Content(store *cache.Store) *Content {
	return &Content{Store: store, tier: t, log: t.log}
}

// ReadAll returns the content d (a manifest) of at most limit bytes: the
// local copy, else the bucket's, verified against d and kept on the disk.
// Errors of the bucket other than a miss are logged and read as a miss.
func (c *Content) ReadAll(d digest.Digest, limit int64) ([]byte, cache.Object, error) {
	data, obj, err := c.Store.ReadAll(d, limit)
	if !errors.Is(err, cache.ErrNotFound) {
		return data, obj, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	data, obj, err = c.tier.ReadAll(ctx, d, limit)
	if errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrTooLarge) {
		return nil, cache.Object{}, err
	}
	if err != nil {
		logFailure(c.log, "reading from the shared tier", err, zap.String("digest", d.String()))
		return nil, cache.Object{}, fmt.Errorf("reading %s: %w", d, cache.ErrNotFound)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		c.log.Error("shared content does not match its digest", zap.String("digest", d.String()), zap.String("got", got.String()))
		return nil, cache.Object{}, fmt.Errorf("reading %s: %w", d, cache.ErrNotFound)
	}
	obj.Digest, obj.Size = d, int64(len(data))
	if _, err := c.Store.Add(d, obj.MediaType, data); err != nil {
		if ce := c.log.Check(zapcore.DebugLevel, "keeping shared content on disk"); ce != nil {
			ce.Write(zap.String("digest", d.String()), zap.Error(err))
		}
	}
	if ce := c.log.Check(zapcore.DebugLevel, "shared hit"); ce != nil {
		ce.Write(zap.String("digest", d.String()), zap.Int64("bytes", obj.Size))
	}
	return data, obj, nil
}

// Put stores small content (a manifest) verified against d, and writes
// content new to the disk (or that the disk could not take) through to
// the bucket.
func (c *Content) Put(d digest.Digest, mediaType string, data []byte) error {
	added, err := c.Store.Add(d, mediaType, data)
	if added || errors.Is(err, cache.ErrUnwritable) {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		obj := cache.Object{Digest: d, Size: int64(len(data)), MediaType: mediaType}
		if perr := c.tier.Put(ctx, obj, data); perr != nil {
			logFailure(c.log, "writing to the shared tier", perr, zap.String("digest", d.String()))
		}
	}
	return err
}

// StatElsewhere returns the metadata of d in the bucket, or an error
// wrapping cache.ErrNotFound (also while the bucket fails). It does not
// look at the local disk.
func (c *Content) StatElsewhere(d digest.Digest) (cache.Object, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	obj, err := c.tier.Stat(ctx, d)
	if err != nil {
		if !errors.Is(err, cache.ErrNotFound) {
			logFailure(c.log, "checking the shared tier", err, zap.String("digest", d.String()))
		}
		return cache.Object{}, fmt.Errorf("checking %s: %w", d, cache.ErrNotFound)
	}
	return obj, nil
}

// Once runs run once across the nodes sharing the bucket (see Tier.Once):
// a node that finds the task running elsewhere waits until ready reports
// true and returns nil without running it.
func (c *Content) Once(ctx context.Context, name string, ready func() bool, run func() error) error {
	return c.tier.Once(ctx, name, ready, run)
}
