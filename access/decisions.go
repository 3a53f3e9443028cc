package access

import (
	"errors"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
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

// DefaultTTL is how long an upstream's decision to let an identity pull a
// repository, or not, is trusted when DecisionsConfig.TTL is zero.
const DefaultTTL = 5 * time.Minute

// maxDecisions bounds the decisions kept in memory.
const maxDecisions = 10000

// ErrClosed is what Records return (wrapped) once closed: a link that
// cannot be recorded then is not worth a log line.
var ErrClosed = errors.New("access records closed")

// Grant is the last time an upstream let an identity pull a repository.
type Grant struct {
	// Identity is the ID of the principal the upstream let pull (see
	// Principal.ID); empty for anonymous access.
	Identity string
	// At is when the upstream last did.
	At time.Time
}

// Records keeps, across restarts (and, with a shared tier, across nodes),
// the links (which repositories an upstream served an object under) and
// the grants of the default identity that Decisions go by. Storage stores
// them; Decisions decide.
type Records interface {
	// Link records that upstream served object d as part of repo.
	Link(upstream, repo string, d digest.Digest) error
	// Linked reports whether upstream served object d as part of repo.
	Linked(upstream, repo string, d digest.Digest) bool
	// GrantOf returns the grant of upstream/repo, or an error when there
	// is none.
	GrantOf(upstream, repo string) (Grant, error)
	// LocalGrant is GrantOf without asking other nodes.
	LocalGrant(upstream, repo string) (Grant, error)
	// SetGrant records g for upstream/repo.
	SetGrant(upstream, repo string, g Grant) error
	// RefreshGrant returns the grant of upstream/repo when another node
	// renewed it since g, else g.
	RefreshGrant(upstream, repo string, g Grant) Grant
	// DeleteGrant forgets the grant of upstream/repo.
	DeleteGrant(upstream, repo string) error
}

// DecisionsConfig configures Decisions.
type DecisionsConfig struct {
	// Records holds links and grants. Required.
	Records Records
	// TTL is how long a decision is trusted. Default: DefaultTTL.
	TTL time.Duration
	// StaleLimit bounds how long past the TTL a decision that allowed is
	// still served on while the upstream cannot answer; zero for no bound.
	StaleLimit time.Duration
	// Refused reports whether an upstream's error refuses access (a 401
	// or 403). Required.
	Refused func(error) bool
	// Failed reports whether an upstream's error means it could not
	// answer (unreachable, 5xx, 429, no slot free), when what is known
	// counts instead. Required.
	Failed func(error) bool
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Log receives what goes wrong with the records. Default: none.
	Log *zap.Logger
}

// WithDefaults returns c with the default of every field left zero (or,
// for TTL, less) filled in: the values NewDecisions runs with. StaleLimit
// has none: zero is no bound.
func (c DecisionsConfig) WithDefaults() DecisionsConfig {
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return c
}

// Decisions are the upstreams' decisions on what each identity may pull:
// kept in memory for the TTL, links and the default identity's grants in
// Records.
type Decisions struct {
	// cfg is the configuration, with its defaults; records, now and log
	// are its Records, Now and Log.
	cfg     DecisionsConfig
	records Records
	now     func() time.Time
	log     *zap.Logger

	mem       decisionMemory
	links     linkMemo
	probes    Flight[probeKey, struct{}]
	downUntil sync.Map // registry -> time.Time
}

// NewDecisions returns the Decisions of cfg.
func NewDecisions(cfg DecisionsConfig) *Decisions {
	cfg = cfg.WithDefaults()
	return &Decisions{cfg: cfg, records: cfg.Records, now: cfg.Now, log: cfg.Log}
}

// repoKey names a repository at an upstream.
type repoKey struct{ registry, repo string }

// decisionKey identifies a decision: a repository, for an identity.
type decisionKey = Key[repoKey]

// decision is what the upstream last said.
type decision struct {
	allowed bool
	// err is the refusal, for a decision that is not allowed.
	err error
	at  time.Time
}

// decisionMemory holds the decisions in memory.
type decisionMemory struct {
	mu sync.Mutex
	m  map[decisionKey]decision
}

func (a *decisionMemory) get(k decisionKey) (decision, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	d, ok := a.m[k]
	return d, ok
}

// set stores d and returns the decision it replaced.
func (a *decisionMemory) set(k decisionKey, d decision, ttl time.Duration) (decision, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[decisionKey]decision)
	}
	prev, had := a.m[k]
	if !had && len(a.m) >= maxDecisions {
		for key, old := range a.m {
			if d.at.Sub(old.at) >= ttl {
				delete(a.m, key)
			}
		}
		// Still full of live decisions: forget a quarter of them, which
		// costs those identities one HEAD each.
		for key := range a.m {
			if len(a.m) < maxDecisions*3/4 {
				break
			}
			delete(a.m, key)
		}
	}
	a.m[k] = d
	return prev, had
}

// Note records what an upstream answer to a request made by who for
// registry/repo says: err nil means the upstream served it, a refusal
// (see DecisionsConfig.Refused) that it refused; anything else says
// nothing about access. Decisions for the default identity are also kept
// in Records, so that they outlive a restart and an outage.
func (a *Decisions) Note(who Principal, registry, repo string, err error) {
	key := KeyOf(who, repoKey{registry, repo})
	now := a.now()
	isDefault := who.IsDefault()
	if err == nil {
		prev, had := a.mem.set(key, decision{allowed: true, at: now}, a.cfg.TTL)
		if isDefault && (!had || !prev.allowed || now.Sub(prev.at) >= a.cfg.TTL/2) {
			if err := a.records.SetGrant(registry, repo, Grant{Identity: who.ID(), At: now}); err != nil {
				a.log.Warn("recording access grant", zap.String("upstream", registry), zap.String("repository", repo), zap.Error(err))
			}
		}
		return
	}
	if !a.cfg.Refused(err) {
		return
	}
	prev, had := a.mem.set(key, decision{err: err, at: now}, a.cfg.TTL)
	if isDefault && (!had || prev.allowed) {
		if _, gerr := a.records.GrantOf(registry, repo); gerr != nil {
			return // nothing to forget (a read costs less than a write)
		}
		if err := a.records.DeleteGrant(registry, repo); err != nil {
			a.log.Warn("deleting access grant", zap.String("upstream", registry), zap.String("repository", repo), zap.Error(err))
		}
	}
}

// decided returns the decision for key that is within the TTL; a decision
// for the default identity that only the records still know (after a
// restart) counts when its grant is recent enough.
func (a *Decisions) decided(who Principal, registry, repo string, now time.Time) (decision, bool) {
	key := KeyOf(who, repoKey{registry, repo})
	if d, ok := a.mem.get(key); ok && now.Sub(d.at) < a.cfg.TTL {
		return d, true
	}
	if !who.IsDefault() {
		return decision{}, false
	}
	g, err := a.records.GrantOf(registry, repo)
	if err == nil && now.Sub(g.At) >= a.cfg.TTL {
		// Another node sharing the cache may have renewed it.
		g = a.records.RefreshGrant(registry, repo, g)
	}
	if err != nil || g.Identity != who.ID() || now.Sub(g.At) >= a.cfg.TTL {
		return decision{}, false
	}
	d := decision{allowed: true, at: g.At}
	a.mem.set(key, d, a.cfg.TTL)
	return d, true
}

// openToDefault reports whether the default identity of who's upstream
// may pull registry/repo, by a decision within the TTL: then any client
// may, whatever credentials it brought.
func (a *Decisions) openToDefault(who Principal, registry, repo string, now time.Time) bool {
	d, ok := a.decided(who.Default(), registry, repo, now)
	return ok && d.allowed
}

// lastKnownAllowed reports whether the last decision for who, however
// old, let it pull, or, for any identity, whether the default identity
// had a grant: what an outage falls back on, within the stale limit.
func (a *Decisions) lastKnownAllowed(who Principal, registry, repo string, now time.Time) bool {
	within := func(at time.Time) bool { return a.cfg.StaleLimit <= 0 || now.Sub(at) < a.cfg.TTL+a.cfg.StaleLimit }
	if d, ok := a.mem.get(KeyOf(who, repoKey{registry, repo})); ok {
		if !d.allowed {
			return false
		}
		if within(d.at) {
			return true
		}
	}
	g, err := a.records.GrantOf(registry, repo)
	return err == nil && g.Identity == who.Default().ID() && within(g.At)
}

// Listed reports whether registry/repo may be named to anyone (in a
// catalog): this node's records hold a grant of it to the default
// identity def of its upstream. One shared lookup per repository would
// make a listing as slow as the bucket times the catalog.
func (a *Decisions) Listed(def Principal, registry, repo string) bool {
	g, err := a.records.LocalGrant(registry, repo)
	return err == nil && g.Identity == def.Default().ID()
}

// upstreamDownFor is how long an access check that found the upstream
// failing makes later checks of that upstream go by what is known instead
// of asking it again: during an outage, cached content costs no upstream
// request and waits for no timeout.
const upstreamDownFor = 30 * time.Second

// noteUpstreamDown remembers that an access check of registry failed.
func (a *Decisions) noteUpstreamDown(registry string, now time.Time) {
	a.downUntil.Store(registry, now.Add(upstreamDownFor))
}

// upstreamDown reports whether an access check of registry failed lately.
func (a *Decisions) upstreamDown(registry string, now time.Time) bool {
	v, ok := a.downUntil.Load(registry)
	return ok && now.Before(v.(time.Time))
}
