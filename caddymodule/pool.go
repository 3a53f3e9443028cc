package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/regcache/regcache/cache"
)

// stores holds the open cache of each storage directory across config
// reloads: a reload provisions the new handlers (which find the cache
// open) before cleaning up the old ones, so the cache, its hot index and
// its fills in flight survive. This is the only package-level state.
var stores = caddy.NewUsagePool()

// openStore returns the open cache of dir, opening it on first use.
func openStore(dir string, opts cache.Options) (*cache.Store, error) {
	v, _, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) {
		s, err := cache.Open(opts)
		if err != nil {
			return nil, fmt.Errorf("opening cache in %s: %w", dir, err)
		}
		return storeDestructor{s}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(storeDestructor).Store, nil
}

// releaseStore drops one use of dir's cache, closing it after the last.
func releaseStore(dir string) error {
	_, err := stores.Delete(dir)
	return err
}

// storeDestructor closes a cache when its last user is gone.
type storeDestructor struct{ *cache.Store }

// Destruct closes the cache.
func (d storeDestructor) Destruct() error { return d.Close() }

// Interface guards
var _ caddy.Destructor = storeDestructor{}
