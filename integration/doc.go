// Package integration holds regcache's end-to-end tests: Caddy running in
// process with the registry_cache module, a real registry (the distribution
// registry) behind a Docker-Hub-like front on loopback (package hubtest),
// and real client libraries pulling through the mirror.
package integration
