package access

import (
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// maxVerdicts bounds the verdicts one rule keeps.
const maxVerdicts = 10000

// cachedVerdict is a verdict with the signature set it was reached on.
type cachedVerdict struct {
	verdict Verdict
	// set identifies the signatures that were looked at (their manifest
	// digests): a different set is checked again.
	set string
	at  time.Time
}

// verdictCache keeps one rule's verdicts per manifest digest.
type verdictCache struct {
	mu sync.Mutex
	m  map[digest.Digest]cachedVerdict
	// parents maps a platform manifest to a signed index that lists it.
	parents map[digest.Digest]digest.Digest
}

// Fresh returns the verdict for d reached within the rule's verdict TTL.
func (v *VerifyRule) Fresh(d digest.Digest, now time.Time) (Verdict, bool) {
	v.verdicts.mu.Lock()
	defer v.verdicts.mu.Unlock()
	c, ok := v.verdicts.m[d]
	if !ok || now.Sub(c.at) >= v.ttl || now.Before(c.at) {
		return Verdict{}, false
	}
	return c.verdict, true
}

// ForSet returns the verdict for d reached on the same signature set, of
// any age, and renews it: the signatures did not change, so neither did
// the verdict. A verdict borrowed from a related manifest is not renewed:
// d's own signatures do not say whether the relative is still signed.
func (v *VerifyRule) ForSet(d digest.Digest, set string, now time.Time) (Verdict, bool) {
	v.verdicts.mu.Lock()
	defer v.verdicts.mu.Unlock()
	c, ok := v.verdicts.m[d]
	if !ok || c.set != set || c.verdict.Borrowed {
		return Verdict{}, false
	}
	c.at = now
	v.verdicts.m[d] = c
	return c.verdict, true
}

// Remember keeps the verdict for d reached on the signature set.
func (v *VerifyRule) Remember(d digest.Digest, set string, verdict Verdict, now time.Time) {
	v.verdicts.mu.Lock()
	defer v.verdicts.mu.Unlock()
	if v.verdicts.m == nil || len(v.verdicts.m) >= maxVerdicts {
		v.verdicts.m = make(map[digest.Digest]cachedVerdict)
	}
	v.verdicts.m[d] = cachedVerdict{verdict: verdict, set: set, at: now}
}

// RememberParent records that index parent, found signed, lists manifest
// child: the child passes the rule through it, so a refusal cached for
// the child is dropped.
func (v *VerifyRule) RememberParent(child, parent digest.Digest) {
	v.verdicts.mu.Lock()
	defer v.verdicts.mu.Unlock()
	if v.verdicts.parents == nil || len(v.verdicts.parents) >= maxVerdicts {
		v.verdicts.parents = make(map[digest.Digest]digest.Digest)
	}
	v.verdicts.parents[child] = parent
	if c, ok := v.verdicts.m[child]; ok && !c.verdict.OK {
		delete(v.verdicts.m, child)
	}
}

// Parent returns the signed index known to list child.
func (v *VerifyRule) Parent(child digest.Digest) (digest.Digest, bool) {
	v.verdicts.mu.Lock()
	defer v.verdicts.mu.Unlock()
	p, ok := v.verdicts.parents[child]
	return p, ok
}

// Last returns the last verdict for d, of any age: what a check falls back
// on while the signatures cannot be looked up (the upstream is down).
func (v *VerifyRule) Last(d digest.Digest) (Verdict, bool) {
	v.verdicts.mu.Lock()
	defer v.verdicts.mu.Unlock()
	c, ok := v.verdicts.m[d]
	return c.verdict, ok
}
