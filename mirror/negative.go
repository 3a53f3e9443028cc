package mirror

import (
	"container/list"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// DefaultNegativeTTL is how long an upstream's 404 for a manifest is
// remembered when Config.NegativeTTL is zero: long enough to absorb a
// client's retry loop or a crash-looping pod, short enough that a tag pushed
// a moment later is served within half a minute.
const DefaultNegativeTTL = 30 * time.Second

// maxNegativeEntries bounds the memory of the negative cache.
const maxNegativeEntries = 10000

// negativeKey identifies one remembered 404, as the key of an
// access.Key: per identity, so a 404 one credential was given (a private
// repository looks missing to a client without access to it) is never
// replayed to a request made with another. accept is the Accept list sent
// upstream, since a registry may answer 404 for a tag whose manifest type
// the request did not accept.
type negativeKey struct {
	registry, repo, ref, accept string
}

// negativeEntry is one remembered 404 and when it expires.
type negativeEntry struct {
	key     access.Key[negativeKey]
	expires time.Time
	err     *upstream.Error
}

// negativeCache remembers upstream 404s for manifests, for a fixed TTL and
// at most max entries. With one TTL for all, entries expire in the order
// they were stored, so one list ordered by storage time serves both to drop
// expired entries and to evict the oldest when full. A nil *negativeCache
// remembers nothing.
type negativeCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[access.Key[negativeKey]]*list.Element // of *negativeEntry
	order   *list.List                                // oldest first
}

// newNegativeCache returns a cache remembering answers for ttl, at most max
// at once; nil (remember nothing) when ttl or max is not positive.
func newNegativeCache(ttl time.Duration, max int) *negativeCache {
	if ttl <= 0 || max <= 0 {
		return nil
	}
	return &negativeCache{ttl: ttl, max: max, entries: make(map[access.Key[negativeKey]]*list.Element), order: list.New()}
}

// get returns the 404 remembered for key, or nil when there is none or it
// expired.
func (c *negativeCache) get(key access.Key[negativeKey], now time.Time) *upstream.Error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil
	}
	e := el.Value.(*negativeEntry)
	if !now.Before(e.expires) {
		c.remove(el)
		return nil
	}
	return e.err
}

// put remembers err for key when it is a negative answer (see
// negativeAnswer) and reports whether it did.
func (c *negativeCache) put(key access.Key[negativeKey], err error, now time.Time) bool {
	if c == nil {
		return false
	}
	ue, ok := negativeAnswer(err)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for front := c.order.Front(); front != nil && !now.Before(front.Value.(*negativeEntry).expires); front = c.order.Front() {
		c.remove(front)
	}
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*negativeEntry)
		e.expires, e.err = now.Add(c.ttl), ue
		c.order.MoveToBack(el)
		return true
	}
	for c.order.Len() >= c.max {
		c.remove(c.order.Front())
	}
	c.entries[key] = c.order.PushBack(&negativeEntry{key: key, expires: now.Add(c.ttl), err: ue})
	return true
}

// len returns the number of entries, expired ones included.
func (c *negativeCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// remove drops one entry; the caller holds mu.
func (c *negativeCache) remove(el *list.Element) {
	delete(c.entries, el.Value.(*negativeEntry).key)
	c.order.Remove(el)
}

// negativeAnswer reports whether err is an upstream answer worth
// remembering: a 404 that says the manifest or the repository does not
// exist (MANIFEST_UNKNOWN, NAME_UNKNOWN, or no error body at all, as for a
// HEAD). 401, 403, 429 and 5xx answers, other 404 codes and failures to
// get any answer are never remembered.
func negativeAnswer(err error) (*upstream.Error, bool) {
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Status != http.StatusNotFound {
		return nil, false
	}
	for _, it := range ue.Items {
		if it.Code != oci.CodeManifestUnknown && it.Code != oci.CodeNameUnknown {
			return nil, false
		}
	}
	return ue, true
}

// negativeKey returns the key of a manifest request for ref, sent upstream
// with accept for t's client.
func negativeKeyOf(t target, ref string, accept []string) access.Key[negativeKey] {
	return access.KeyOf(t.who, negativeKey{registry: t.registry, repo: t.repo, ref: ref, accept: strings.Join(accept, ",")})
}

// rememberedMissing returns the remembered 404 of key, counted and wrapped
// with the reference, or nil when the upstream must be asked.
func (m *Mirror) rememberedMissing(key access.Key[negativeKey]) error {
	ue := m.negative.get(key, m.now())
	if ue == nil {
		return nil
	}
	m.stats.negativeHits.Add(1)
	if ce := m.log.Check(zapcore.DebugLevel, "negative cache hit"); ce != nil {
		ce.Write(zap.String("upstream", key.Of().registry), zap.String("repository", key.Of().repo),
			zap.String("reference", key.Of().ref))
	}
	return fmt.Errorf("manifest %s:%s (answer remembered): %w", key.Of().repo, key.Of().ref, ue)
}

// rememberMissing remembers err for key when it is a negative answer.
func (m *Mirror) rememberMissing(key access.Key[negativeKey], err error) {
	if m.negative.put(key, err, m.now()) {
		if ce := m.log.Check(zapcore.DebugLevel, "negative answer remembered"); ce != nil {
			ce.Write(zap.String("upstream", key.Of().registry), zap.String("repository", key.Of().repo),
				zap.String("reference", key.Of().ref), zap.Duration("ttl", m.negative.ttl))
		}
	}
}
