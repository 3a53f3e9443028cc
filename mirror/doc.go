// Package mirror is the pull-through logic of regcache as a plain
// http.Handler: it routes a /v2/ request to a configured upstream registry
// and repository, answers digest-addressed content from the cache, resolves
// tags remote-first within a TTL, and fills misses from the upstream through
// the cache's single fill per digest.
//
// It knows nothing of Caddy; caddymodule wires it into a Caddy site.
package mirror
