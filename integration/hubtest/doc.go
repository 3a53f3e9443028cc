// Package hubtest runs, on loopback, an upstream registry that behaves
// like Docker Hub in front of the real distribution registry: a token
// realm on its own listener issuing short-lived anonymous or Basic-auth
// pull tokens, a registry front that demands them, answers blob GETs with
// a 307 to a signed URL on a separate "CDN" listener that refuses any
// Authorization header, sends rate-limit headers and can enforce a pull
// budget, and counters of everything it served. Tests and benchmarks use
// it as the upstream of regcache.
package hubtest
