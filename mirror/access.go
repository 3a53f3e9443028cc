package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// Cached content is served to a client only while the upstream lets that
// client pull the repository it asks for. Every answer of the upstream
// about a repository (a manifest or blob it served or refused, a HEAD) is
// a decision for the identity the request was made with (the client's own
// credentials, else the configured ones, else anonymous), kept for the
// access TTL. Content is shared by digest across repositories, so an
// object is served under a repository only once the upstream served it
// under that repository (a link, kept on disk). A request that lacks
// either is checked with one HEAD, which Docker Hub does not count against
// its pull limit.

// DefaultAccessTTL is how long an upstream's decision to let an identity
// pull a repository, or not, is trusted when Config.AccessTTL is zero.
const DefaultAccessTTL = 5 * time.Minute

// maxAccessEntries bounds the decisions kept in memory.
const maxAccessEntries = 10000

// accessKey identifies a decision: an identity (upstream.CredentialID) and
// a repository.
type accessKey struct {
	registry, repo, identity string
}

// accessDecision is what the upstream last said.
type accessDecision struct {
	allowed bool
	// err is the refusal, for a decision that is not allowed.
	err error
	at  time.Time
}

// accessDecisions are the decisions in memory.
type accessDecisions struct {
	mu sync.Mutex
	m  map[accessKey]accessDecision
}

func (a *accessDecisions) get(k accessKey) (accessDecision, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.m[k]
	return d, ok
}

// set stores d and returns the decision it replaced.
func (a *accessDecisions) set(k accessKey, d accessDecision, ttl time.Duration) (accessDecision, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[accessKey]accessDecision)
	}
	prev, had := a.m[k]
	if !had && len(a.m) >= maxAccessEntries {
		for key, old := range a.m {
			if d.at.Sub(old.at) >= ttl {
				delete(a.m, key)
			}
		}
		// Still full of live decisions: forget a quarter of them, which
		// costs those identities one HEAD each.
		for key := range a.m {
			if len(a.m) < maxAccessEntries*3/4 {
				break
			}
			delete(a.m, key)
		}
	}
	a.m[k] = d
	return prev, had
}

type upstreamDownKey struct{}

// withUpstreamDown marks ctx as serving while the upstream just failed to
// answer, so that access checks go by what is known instead of asking it
// once more.
func withUpstreamDown(ctx context.Context) context.Context {
	return context.WithValue(ctx, upstreamDownKey{}, true)
}

// accessKeyOf returns the decision key of ctx's identity for t.
func accessKeyOf(ctx context.Context, t target) accessKey {
	return accessKey{registry: t.registry, repo: t.repo, identity: t.upstream.CredentialID(ctx)}
}

// refusal reports whether err is the upstream refusing access (401, 403).
func refusal(err error) (*upstream.Error, bool) {
	var ue *upstream.Error
	if errors.As(err, &ue) && (ue.Status == http.StatusUnauthorized || ue.Status == http.StatusForbidden) {
		return ue, true
	}
	return nil, false
}

// noteAccess records what an upstream answer to a request made with ctx
// for t says: err nil means the upstream served it, a 401 or 403 that it
// refused; anything else says nothing about access. Decisions for the
// mirror's default identity are also kept on disk, so that they outlive a
// restart and an outage.
func (m *Mirror) noteAccess(ctx context.Context, t target, err error) {
	key := accessKeyOf(ctx, t)
	now := m.now()
	isDefault := key.identity == t.upstream.DefaultCredentialID()
	if err == nil {
		prev, had := m.access.set(key, accessDecision{allowed: true, at: now}, m.accessTTL)
		if isDefault && (!had || !prev.allowed || now.Sub(prev.at) >= m.accessTTL/2) {
			if err := m.records.SetGrant(t.registry, t.repo, cache.Grant{Identity: key.identity, At: now}); err != nil {
				m.log.Warn("recording access grant", zap.String("upstream", t.registry), zap.String("repository", t.repo), zap.Error(err))
			}
		}
		return
	}
	if _, ok := refusal(err); !ok {
		return
	}
	prev, had := m.access.set(key, accessDecision{err: err, at: now}, m.accessTTL)
	if isDefault && (!had || prev.allowed) {
		if _, gerr := m.records.GrantOf(t.registry, t.repo); gerr != nil {
			return // nothing to forget (a read costs less than a write)
		}
		if err := m.records.DeleteGrant(t.registry, t.repo); err != nil {
			m.log.Warn("deleting access grant", zap.String("upstream", t.registry), zap.String("repository", t.repo), zap.Error(err))
		}
	}
}

// maxLinkMemo bounds the links remembered in memory.
const maxLinkMemo = 100000

// linkKey identifies a link in memory.
type linkKey struct {
	registry, repo string
	d              digest.Digest
}

// linkMemo remembers links known to be on disk, so that a hit does not
// read them there. A link is a fact about the upstream, true whether or
// not the object is still cached, so the memo never needs to forget one;
// it is emptied when full.
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

// link records that the upstream served d under t's repository.
func (m *Mirror) link(t target, d digest.Digest) {
	k := linkKey{registry: t.registry, repo: t.repo, d: d}
	if m.links.has(k) {
		return
	}
	if err := m.records.Link(t.registry, t.repo, d); err != nil {
		if !errors.Is(err, cache.ErrClosed) {
			m.log.Warn("recording link", zap.String("upstream", t.registry), zap.String("repository", t.repo),
				zap.String("digest", d.String()), zap.Error(err))
		}
		return
	}
	m.links.add(k)
}

// linked reports whether the upstream served d under t's repository.
func (m *Mirror) linked(t target, d digest.Digest) bool {
	k := linkKey{registry: t.registry, repo: t.repo, d: d}
	if m.links.has(k) {
		return true
	}
	if !m.records.Linked(t.registry, t.repo, d) {
		return false
	}
	m.links.add(k)
	return true
}

// decided returns the decision for key that is within the access TTL; a
// decision for the default identity that only the disk still knows (after
// a restart) counts when its grant is recent enough.
func (m *Mirror) decided(t target, key accessKey, now time.Time) (accessDecision, bool) {
	if d, ok := m.access.get(key); ok && now.Sub(d.at) < m.accessTTL {
		return d, true
	}
	if key.identity != t.upstream.DefaultCredentialID() {
		return accessDecision{}, false
	}
	g, err := m.records.GrantOf(t.registry, t.repo)
	if err == nil && now.Sub(g.At) >= m.accessTTL {
		// Another node sharing the cache may have renewed it.
		g = m.records.RefreshGrant(t.registry, t.repo, g)
	}
	if err != nil || g.Identity != key.identity || now.Sub(g.At) >= m.accessTTL {
		return accessDecision{}, false
	}
	d := accessDecision{allowed: true, at: g.At}
	m.access.set(key, d, m.accessTTL)
	return d, true
}

// openToDefault reports whether the mirror's default identity may pull t's
// repository, by a decision within the TTL: then any client may, whatever
// credentials it brought.
func (m *Mirror) openToDefault(t target, now time.Time) bool {
	key := accessKey{registry: t.registry, repo: t.repo, identity: t.upstream.DefaultCredentialID()}
	d, ok := m.decided(t, key, now)
	return ok && d.allowed
}

// lastKnownAllowed reports whether the last decision for key, however old,
// let it pull, or, for any identity, whether the default identity had a
// grant: what an outage falls back on, within the stale_if_error limit.
func (m *Mirror) lastKnownAllowed(t target, key accessKey, now time.Time) bool {
	within := func(at time.Time) bool { return m.staleLimit <= 0 || now.Sub(at) < m.accessTTL+m.staleLimit }
	if d, ok := m.access.get(key); ok {
		if !d.allowed {
			return false
		}
		if within(d.at) {
			return true
		}
	}
	g, err := m.records.GrantOf(t.registry, t.repo)
	return err == nil && g.Identity == t.upstream.DefaultCredentialID() && within(g.At)
}

// mayServe decides whether the client of ctx may be served object d (a
// manifest or a blob, by kind) of t's repository from the cache or from a
// fill that another request started. Without a link of d to the
// repository and a decision for the client within the TTL, it asks the
// upstream with a HEAD of d made with the client's credentials. While the
// upstream cannot answer, linked content is served when the client's last
// known decision, or the default identity's grant, allowed it.
func (m *Mirror) mayServe(ctx context.Context, t target, kind oci.Kind, d digest.Digest) error {
	now := m.now()
	key := accessKeyOf(ctx, t)
	dec, decided := m.decided(t, key, now)
	if decided && !dec.allowed {
		// A refusal within the TTL holds for every object of the
		// repository, linked or not.
		return dec.err
	}
	linked := m.linked(t, d)
	if linked {
		if decided || m.openToDefault(t, now) {
			return nil
		}
		down, _ := ctx.Value(upstreamDownKey{}).(bool)
		if (down || m.upstreamDown(t, now)) && m.lastKnownAllowed(t, key, now) {
			return nil
		}
	}
	err := m.probeOnce(ctx, t, key, kind, d)
	if err == nil {
		m.link(t, d)
		return nil
	}
	if _, ok := refusal(err); ok {
		return err
	}
	failed := staleAllowed(err) || errors.Is(err, errBusy)
	if failed {
		m.noteUpstreamDown(t, now)
	}
	if linked && failed && m.lastKnownAllowed(t, key, now) {
		if ce := m.log.Check(zapcore.DebugLevel, "serving by last known access: upstream failed"); ce != nil {
			ce.Write(zap.String("upstream", t.registry), zap.String("repository", t.repo), zap.String("digest", d.String()), zap.Error(err))
		}
		return nil
	}
	return err
}

// upstreamDownFor is how long an access check that found the upstream
// failing makes later checks of that upstream go by what is known instead
// of asking it again: during an outage, cached content costs no upstream
// request and waits for no timeout.
const upstreamDownFor = 30 * time.Second

// noteUpstreamDown remembers that an access check of t's upstream failed.
func (m *Mirror) noteUpstreamDown(t target, now time.Time) {
	m.downUntil.Store(t.registry, now.Add(upstreamDownFor))
}

// upstreamDown reports whether an access check of t's upstream failed
// lately.
func (m *Mirror) upstreamDown(t target, now time.Time) bool {
	v, ok := m.downUntil.Load(t.registry)
	return ok && now.Before(v.(time.Time))
}

// probeKey identifies one access check, shared by concurrent requests of
// the same identity for the same object.
type probeKey struct {
	access accessKey
	kind   oci.Kind
	d      digest.Digest
}

// probeOnce is probe, shared by concurrent identical checks.
func (m *Mirror) probeOnce(ctx context.Context, t target, key accessKey, kind oci.Kind, d digest.Digest) error {
	_, err := m.probes.do(ctx, probeKey{access: key, kind: kind, d: d}, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, m.probe(ctx, t, kind, d)
	})
	return err
}

// probe asks the upstream with a HEAD whether the identity of ctx may pull
// d under t's repository, and records the answer.
func (m *Mirror) probe(ctx context.Context, t target, kind oci.Kind, d digest.Digest) error {
	path := "blobs/" + d.String()
	hdr := http.Header{}
	if kind == oci.KindManifest {
		path = "manifests/" + d.String()
		hdr.Set("Accept", oci.AcceptHeader(digestAccept))
	}
	resp, err := m.upstreamDo(ctx, t, upstream.Request{Method: http.MethodHead, Repository: t.repo, Path: path, Header: hdr})
	if err == nil {
		_ = resp.Body.Close()
	}
	m.noteAccess(ctx, t, err)
	if ce := m.log.Check(zapcore.DebugLevel, "access checked"); ce != nil {
		ce.Write(zap.String("upstream", t.registry), zap.String("repository", t.repo),
			zap.String("digest", d.String()), zap.Bool("allowed", err == nil))
	}
	if err != nil {
		return fmt.Errorf("checking access to %s@%s: %w", t.repo, d, err)
	}
	return nil
}
