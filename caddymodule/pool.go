package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

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

// openCache is a storage directory's content store with its records, as
// the mirror uses them: wrapped by the shared tier when the cache has
// one, which then also brings the fills' sources and the peers.
type openCache struct {
	store   *cache.Store
	content mirror.Content
	records mirror.Records
	peers   mirror.Peers // nil: none
	tier    *s3tier.Tier // nil: none
}

// openStore returns the open cache of dir, opening it on first use; tier
// (nil: none) shares it with other nodes.
func openStore(dir string, opts cache.Options, tier *s3tier.Tier) (openCache, error) {
	v, _, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		if tier != nil {
			opts.Sources = tier
		}
		rec := records.New()
		opts.Dependent = rec
		s, err := cache.Open(opts)
		if err != nil {
			return nil, fmt.Errorf("opening cache in %s: %w", dir, err)
		}
		oc := openCache{store: s, content: s, records: rec}
		if tier != nil {
			shared := tier.Content(s)
			oc.content, oc.records, oc.peers, oc.tier = shared, tier.Records(rec), shared, tier
		}
		return storeDestructor{oc}, nil
	})
	if err != nil {
		return openCache{}, err
	}
	return v.(storeDestructor).openCache, nil
}

// releaseStore drops one use of dir's cache, closing it after the last.
func releaseStore(dir string) error {
	_, err := stores.Delete(dir)
	return err
}

// storeDestructor closes a cache when its last user is gone.
type storeDestructor struct{ openCache }

// Destruct closes the cache.
func (d storeDestructor) Destruct() error { return d.store.Close() }

// Interface guards
var (
	_ caddy.Destructor    = storeDestructor{}
	_ mirror.Content      = (*cache.Store)(nil)
	_ mirror.Content      = (*s3tier.Content)(nil)
	_ mirror.Peers        = (*s3tier.Content)(nil)
	_ mirror.Records      = (*records.Store)(nil)
	_ mirror.Records      = (*s3tier.Records)(nil)
	_ s3tier.LocalRecords = (*records.Store)(nil)
)
