package caddymodule

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/records"
	"github.com/regcache/regcache/s3tier"
)

// stores holds the open cache of each storage directory across config
// reloads: a reload provisions the new handlers (which find the cache
// open) before cleaning up the old ones, so the cache, its hot index and
// its fills in flight survive. This is the only package-level state.
var stores = caddy.NewUsagePool()

// pooledStore is an open cache with what it was opened with: the content
// store with its records, as the mirror uses them (wrapped by the shared
// tier when the cache has one, which then also brings the fills' sources
// and the peers).
type pooledStore struct {
	store   *cache.Store
	content mirror.Content
	records mirror.Records
	peers   mirror.Peers // nil: none
	// tier is the shared bucket behind it; nil without one.
	tier *s3tier.Tier
	// kept are the settings it opened with and keeps until it closes.
	kept []keptSetting
}

// Destruct closes the cache when its last user is gone.
func (p *pooledStore) Destruct() error { return p.store.Close() }

// openStore returns the open cache of s.dir, opening it (and its shared
// bucket) with s on first use; loaded reports that it was open already,
// with the settings it opened with.
func openStore(s settings, logger *zap.Logger) (p *pooledStore, loaded bool, err error) {
	v, loaded, err := stores.LoadOrNew(s.dir, func() (caddy.Destructor, error) {
		opts := s.cache
		opts.Logger = logger.Named("cache")
		var tier *s3tier.Tier
		if s.s3 != nil {
			tc := *s.s3
			tc.Logger = logger.Named("s3")
			t, err := s3tier.New(tc)
			if err != nil {
				return nil, err
			}
			tier, opts.Sources = t, t
		}
		rec := records.New()
		opts.Dependent = rec
		st, err := cache.Open(opts)
		if err != nil {
			return nil, fmt.Errorf("opening cache in %s: %w", s.dir, err)
		}
		p := &pooledStore{store: st, content: st, records: rec, tier: tier, kept: keptSettings(s)}
		if tier != nil {
			shared := tier.Content(st)
			p.content, p.records, p.peers = shared, tier.Records(rec), shared
			go func() {
				// A report only: the cache serves without the bucket meanwhile.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := tier.Probe(ctx); err != nil {
					logger.Error("shared bucket not usable", zap.Error(err))
				}
			}()
		}
		return p, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*pooledStore), loaded, nil
}

// releaseStore drops one use of dir's cache, closing it after the last.
func releaseStore(dir string) error {
	_, err := stores.Delete(dir)
	return err
}

// Interface guards
var (
	_ caddy.Destructor    = (*pooledStore)(nil)
	_ mirror.Content      = (*cache.Store)(nil)
	_ mirror.Content      = (*s3tier.Content)(nil)
	_ mirror.Peers        = (*s3tier.Content)(nil)
	_ mirror.Records      = (*records.Store)(nil)
	_ mirror.Records      = (*s3tier.Records)(nil)
	_ s3tier.LocalRecords = (*records.Store)(nil)
)
