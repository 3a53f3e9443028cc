// Package upstream is regcache's client of one upstream registry: it
// authenticates with the Docker token dance (or Basic), caches tokens per
// realm, service, scope and credential, follows blob redirects without
// leaking the Authorization header to other hosts, fails over across an
// ordered list of endpoints, times out stalled bodies, and reports Docker
// Hub's rate-limit headers.
package upstream
