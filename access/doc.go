// Package access answers every "may this identity have this" question of
// the mirror.
//
// Upstream decisions (Decisions): what each upstream let each identity
// (a Principal) pull, kept for the access TTL; links recording which
// repositories an upstream served an object under, so that content shared
// by digest is never served under another repository without the
// upstream's word; grants of the default identity, which outlive a
// restart and an outage; the one HEAD that checks what is not known; and
// what is served while the upstream cannot answer. Links and grants are
// stored by a Records implementation; the HEAD is the caller's.
//
// Remembered answers (Key, Flight): every cache of answers and every call
// shared by concurrent requests is keyed by a Key, which only KeyOf
// builds from a Principal, so that no cache can forget whose answer it
// holds.
//
// The edge policy an operator configures (Policy): allow and deny lists
// of repository (and tag) patterns, blocked digests, and the signatures a
// manifest must carry. The caller names the registry, repository and
// reference of each request and supplies the signatures it found; the
// package answers with a Decision or a Verdict, keeps per-rule counters
// and caches signature verdicts. The sigstore libraries do every
// cryptographic check.
//
// The package is plain Go: it imports neither Caddy nor the cache, the
// registry client or the mirror.
package access
