// Package regcache is a pull-through cache for container registries,
// shipped as a Caddy v2 module. Importing it (as xcaddy does with
// --with github.com/regcache/regcache) registers the registry_cache HTTP
// handler and its Caddyfile directive; the code lives in caddymodule and
// the packages below it.
package regcache

import (
	// Register the registry_cache module with Caddy.
	_ "github.com/regcache/regcache/caddymodule"
)
