// Package access decides whether content may be served, by the edge
// policy an operator configures: allow and deny lists of repository (and
// tag) patterns, blocked digests, and the signatures a manifest must carry.
// It is plain Go: the caller names the registry, repository and reference
// of each request and supplies the signatures it found; the package
// answers with a Decision or a Verdict, keeps per-rule counters and caches
// signature verdicts. The sigstore libraries do every cryptographic check.
package access
