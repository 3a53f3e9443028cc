package access

import (
	"errors"
	"sync"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
)

// maxLinkMemo bounds the links remembered in memory.
const maxLinkMemo = 100000

// linkKey identifies a link in memory.
type linkKey struct {
	registry, repo string
	d              digest.Digest
}

// linkMemo remembers links known to be recorded, so that a hit does not
// read them in the records. A link is a fact about the upstream, true
// whether or not the object is still cached, so the memo never needs to
// forget one; it is emptied when full.
type linkMemo struct {
	mu sync.Mutex
	m  map[linkKey]struct{}
}

func (lm *linkMemo) has(k linkKey) bool {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	_, ok := lm.m[k]
	return ok
}

func (lm *linkMemo) add(k linkKey) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.m == nil || len(lm.m) >= maxLinkMemo {
		lm.m = make(map[linkKey]struct{})
	}
	lm.m[k] = struct{}{}
}

// Link records that the upstream registry served d under repo.
func (a *Decisions) Link(registry, repo string, d digest.Digest) {
	k := linkKey{registry: registry, repo: repo, d: d}
	if a.links.has(k) {
		return
	}
	if err := a.records.Link(registry, repo, d); err != nil {
		if !errors.Is(err, ErrClosed) {
			a.log.Warn("recording link", zap.String("upstream", registry), zap.String("repository", repo),
				zap.String("digest", d.String()), zap.Error(err))
		}
		return
	}
	a.links.add(k)
}

// Linked reports whether the upstream registry served d under repo.
func (a *Decisions) Linked(registry, repo string, d digest.Digest) bool {
	k := linkKey{registry: registry, repo: repo, d: d}
	if a.links.has(k) {
		return true
	}
	if !a.records.Linked(registry, repo, d) {
		return false
	}
	a.links.add(k)
	return true
}
