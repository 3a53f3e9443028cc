package access

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/oci"
)

// Check is one decision under way: whether an identity may be served an
// object of a repository from the cache, or from a fill that another
// request started. Decisions.Check settles it by what is known when it
// can; else Decisions.Ask asks the upstream.
type Check struct {
	who            Principal
	registry, repo string
	kind           oci.Kind
	d              digest.Digest
	now            time.Time
	linked         bool
	settled        bool
	err            error
}

// Settled reports whether what is known decided c, and the refusal when
// it refused.
func (c Check) Settled() (bool, error) { return c.settled, c.err }

// Check decides by what is known whether who may be served object d (a
// manifest or a blob, by kind) of registry/repo: it may with a link of d
// to the repository and a decision within the TTL that allowed who or the
// default identity; a refusal within the TTL holds for every object of
// the repository. While the upstream cannot answer (down: the caller just
// found it failing, or a check did lately), linked content is served when
// who's last known decision, or the default identity's grant, allowed it.
// Anything else is not settled: Ask the upstream.
func (a *Decisions) Check(who Principal, registry, repo string, kind oci.Kind, d digest.Digest, down bool) Check {
	c := Check{who: who, registry: registry, repo: repo, kind: kind, d: d, now: a.now()}
	dec, decided := a.decided(who, registry, repo, c.now)
	if decided && !dec.allowed {
		c.settled, c.err = true, dec.err
		return c
	}
	c.linked = a.Linked(registry, repo, d)
	if c.linked {
		if decided || a.openToDefault(who, registry, repo, c.now) {
			c.settled = true
			return c
		}
		if (down || a.upstreamDown(registry, c.now)) && a.lastKnownAllowed(who, registry, repo, c.now) {
			c.settled = true
			return c
		}
	}
	return c
}

// probeKey identifies one access check, shared by concurrent requests of
// the same identity for the same object.
type probeKey struct {
	registry, repo string
	kind           oci.Kind
	d              digest.Digest
}

// Ask settles c with the upstream: probe asks it, with a HEAD of the
// object made with c's identity's credentials, once for every concurrent
// identical check. Its answer is noted (see Note), and an object it served
// is linked to the repository. When the upstream cannot answer, linked
// content is served by who's last known decision, as in Check, and later
// checks of that upstream go by what is known for a while.
func (a *Decisions) Ask(ctx context.Context, c Check, probe func(context.Context) error) error {
	if c.settled {
		return c.err
	}
	key := KeyOf(c.who, probeKey{registry: c.registry, repo: c.repo, kind: c.kind, d: c.d})
	_, err := a.probes.Do(ctx, key, func(ctx context.Context) (struct{}, error) {
		err := probe(ctx)
		a.Note(c.who, c.registry, c.repo, err)
		if ce := a.log.Check(zapcore.DebugLevel, "access checked"); ce != nil {
			ce.Write(zap.String("upstream", c.registry), zap.String("repository", c.repo),
				zap.String("digest", c.d.String()), zap.Bool("allowed", err == nil))
		}
		return struct{}{}, err
	})
	if err == nil {
		a.Link(c.registry, c.repo, c.d)
		return nil
	}
	if a.cfg.Refused(err) {
		return err
	}
	failed := a.cfg.Failed(err)
	if failed {
		a.noteUpstreamDown(c.registry, c.now)
	}
	if c.linked && failed && a.lastKnownAllowed(c.who, c.registry, c.repo, c.now) {
		if ce := a.log.Check(zapcore.DebugLevel, "serving by last known access: upstream failed"); ce != nil {
			ce.Write(zap.String("upstream", c.registry), zap.String("repository", c.repo), zap.String("digest", c.d.String()), zap.Error(err))
		}
		return nil
	}
	return err
}
