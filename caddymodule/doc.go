// Package caddymodule registers regcache with Caddy: the HTTP handler
// http.handlers.registry_cache, its Caddyfile directive registry_cache and
// the place of that directive in Caddy's directive order. It is the only
// regcache package that imports Caddy; the pull-through logic lives in
// package mirror.
package caddymodule
