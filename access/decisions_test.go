package access

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/oci"
)

var (
	errRefused = errors.New("401 unauthorized")
	errDown    = errors.New("upstream unavailable")
	errGone    = errors.New("404 unknown")
)

// memRecords are Records in memory.
type memRecords struct {
	links  map[string]bool
	grants map[string]Grant
}

func newMemRecords() *memRecords {
	return &memRecords{links: map[string]bool{}, grants: map[string]Grant{}}
}

func (r *memRecords) Link(u, repo string, d digest.Digest) error {
	r.links[u+"/"+repo+"@"+d.String()] = true
	return nil
}

func (r *memRecords) Linked(u, repo string, d digest.Digest) bool {
	return r.links[u+"/"+repo+"@"+d.String()]
}

func (r *memRecords) GrantOf(u, repo string) (Grant, error) {
	g, ok := r.grants[u+"/"+repo]
	if !ok {
		return Grant{}, errors.New("no grant")
	}
	return g, nil
}

func (r *memRecords) LocalGrant(u, repo string) (Grant, error) { return r.GrantOf(u, repo) }

func (r *memRecords) SetGrant(u, repo string, g Grant) error {
	r.grants[u+"/"+repo] = g
	return nil
}

func (r *memRecords) RefreshGrant(_, _ string, g Grant) Grant { return g }

func (r *memRecords) DeleteGrant(u, repo string) error {
	delete(r.grants, u+"/"+repo)
	return nil
}

// decisionsEnv is one Decisions with its records and clock.
type decisionsEnv struct {
	a       *Decisions
	records *memRecords
	now     time.Time
}

func newDecisionsEnv(records *memRecords, now time.Time) *decisionsEnv {
	e := &decisionsEnv{records: records, now: now}
	e.a = NewDecisions(DecisionsConfig{
		Records: records, TTL: time.Minute, StaleLimit: time.Hour,
		Refused: func(err error) bool { return errors.Is(err, errRefused) },
		Failed:  func(err error) bool { return errors.Is(err, errDown) },
		Now:     func() time.Time { return e.now },
	})
	return e
}

// mayServe is the mirror's use: Check, then Ask with a probe answering
// answer; it returns the result and whether the probe ran.
func (e *decisionsEnv) mayServe(who Principal, d digest.Digest, down bool, answer error) (error, bool) {
	c := e.a.Check(who, "docker.io", "library/app", oci.KindBlob, d, down)
	if settled, err := c.Settled(); settled {
		return err, false
	}
	var asked atomic.Bool
	err := e.a.Ask(context.Background(), c, func(context.Context) error {
		asked.Store(true)
		return answer
	})
	return err, asked.Load()
}

func TestDecisions(t *testing.T) {
	d := digest.FromString("layer")
	def := NewPrincipal("", "")
	alice := NewPrincipal("a11ce", "")
	bob := NewPrincipal("b0b", "")
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		prepare func(e *decisionsEnv)
		who     Principal
		down    bool
		answer  error // the probe's, when asked
		wantErr error
		asked   bool
	}{
		{"nothing known: one HEAD", nil, def, false, nil, nil, true},
		{"nothing known, refused", nil, def, false, errRefused, errRefused, true},
		{"linked and allowed within the TTL: no HEAD", func(e *decisionsEnv) {
			e.a.Note(def, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
		}, def, false, errRefused, nil, false},
		{"allowed but not linked: one HEAD", func(e *decisionsEnv) {
			e.a.Note(def, "docker.io", "library/app", nil)
		}, def, false, nil, nil, true},
		{"a refusal within the TTL holds, linked or not", func(e *decisionsEnv) {
			e.a.Link("docker.io", "library/app", d)
			e.a.Note(alice, "docker.io", "library/app", errRefused)
		}, alice, false, nil, errRefused, false},
		{"past the TTL: one HEAD", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
			e.now = e.now.Add(2 * time.Minute)
		}, alice, false, nil, nil, true},
		{"open to the default identity: open to every client", func(e *decisionsEnv) {
			e.a.Note(def, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
		}, alice, false, errRefused, nil, false},
		{"one client's decision is not another's", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
		}, bob, false, errRefused, errRefused, true},
		{"a refusal of a client does not close the repository to others", func(e *decisionsEnv) {
			e.a.Note(def, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
			e.a.Note(alice, "docker.io", "library/app", errRefused)
		}, bob, false, errRefused, nil, false},
		{"the default identity's grant outlives a restart", func(e *decisionsEnv) {
			e.a.Note(def, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
			*e = *newDecisionsEnv(e.records, e.now.Add(30*time.Second))
		}, def, false, errRefused, nil, false},
		{"a refusal of the default identity deletes its grant", func(e *decisionsEnv) {
			e.a.Note(def, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
			e.a.Note(def, "docker.io", "library/app", errRefused)
			*e = *newDecisionsEnv(e.records, e.now)
		}, def, false, errRefused, errRefused, true},
		{"the upstream down: linked content served by the last decision", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
			e.now = e.now.Add(2 * time.Minute)
		}, alice, false, errDown, nil, true},
		{"the upstream known down: no HEAD", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
			e.now = e.now.Add(2 * time.Minute)
		}, alice, true, errDown, nil, false},
		{"the upstream down: the last refusal stands", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", errRefused)
			e.a.Link("docker.io", "library/app", d)
			e.now = e.now.Add(2 * time.Minute)
		}, alice, false, errDown, errDown, true},
		{"the upstream down past the stale limit: not served", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", nil)
			e.a.Link("docker.io", "library/app", d)
			e.now = e.now.Add(2 * time.Hour)
		}, alice, false, errDown, errDown, true},
		{"the upstream down: unlinked content is not served", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", nil)
			e.now = e.now.Add(2 * time.Minute)
		}, alice, false, errDown, errDown, true},
		{"another answer says nothing about access", func(e *decisionsEnv) {
			e.a.Note(alice, "docker.io", "library/app", errGone)
			e.a.Link("docker.io", "library/app", d)
		}, alice, false, nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDecisionsEnv(newMemRecords(), start)
			if tc.prepare != nil {
				tc.prepare(e)
			}
			err, asked := e.mayServe(tc.who, d, tc.down, tc.answer)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("mayServe = %v, want %v", err, tc.wantErr)
			}
			if asked != tc.asked {
				t.Errorf("asked the upstream: %v, want %v", asked, tc.asked)
			}
			if asked && tc.answer == nil && !e.a.Linked("docker.io", "library/app", d) {
				t.Error("an object the upstream served is not linked")
			}
		})
	}
}

func TestDecisionsRememberTheDownUpstream(t *testing.T) {
	d := digest.FromString("layer")
	alice := NewPrincipal("a11ce", "")
	e := newDecisionsEnv(newMemRecords(), time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	e.a.Note(alice, "docker.io", "library/app", nil)
	e.a.Link("docker.io", "library/app", d)
	e.now = e.now.Add(2 * time.Minute)
	steps := []struct {
		advance time.Duration
		asked   bool
	}{
		{0, true},                             // the HEAD fails: served by the last decision
		{time.Second, false},                  // the failure is remembered: no HEAD
		{upstreamDownFor + time.Second, true}, // forgotten: asked again
	}
	for i, s := range steps {
		e.now = e.now.Add(s.advance)
		err, asked := e.mayServe(alice, d, false, errDown)
		if err != nil || asked != s.asked {
			t.Errorf("step %d: mayServe = %v, asked %v; want nil, asked %v", i, err, asked, s.asked)
		}
	}
}

func TestListed(t *testing.T) {
	def := NewPrincipal("d3f", "d3f")
	e := newDecisionsEnv(newMemRecords(), time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	e.a.Note(def, "docker.io", "library/public", nil)
	e.a.Note(NewPrincipal("a11ce", "d3f"), "docker.io", "library/private", nil)
	tests := []struct {
		repo string
		want bool
	}{
		{"library/public", true},
		{"library/private", false},
		{"library/unknown", false},
	}
	for _, tc := range tests {
		if got := e.a.Listed(def, "docker.io", tc.repo); got != tc.want {
			t.Errorf("Listed(%s) = %v, want %v", tc.repo, got, tc.want)
		}
	}
}

func TestConfigsWithDefaults(t *testing.T) {
	tests := []struct {
		name      string
		got, want any
	}{
		{"decisions ttl", DecisionsConfig{}.WithDefaults().TTL, DefaultTTL},
		{"decisions ttl negative", DecisionsConfig{TTL: -1}.WithDefaults().TTL, DefaultTTL},
		{"decisions ttl set", DecisionsConfig{TTL: time.Minute}.WithDefaults().TTL, time.Minute},
		{"decisions stale limit: none", DecisionsConfig{}.WithDefaults().StaleLimit, time.Duration(0)},
		{"decisions stale limit set", DecisionsConfig{StaleLimit: time.Hour}.WithDefaults().StaleLimit, time.Hour},
		{"decisions clock", DecisionsConfig{}.WithDefaults().Now != nil, true},
		{"decisions log", DecisionsConfig{}.WithDefaults().Log != nil, true},
		{"verdict ttl", VerifyConfig{}.WithDefaults().VerdictTTL, DefaultVerdictTTL},
		{"verdict ttl negative", VerifyConfig{VerdictTTL: -1}.WithDefaults().VerdictTTL, DefaultVerdictTTL},
		{"verdict ttl set", VerifyConfig{VerdictTTL: time.Second}.WithDefaults().VerdictTTL, time.Second},
		{"verify mode kept", VerifyConfig{Mode: ModeAudit}.WithDefaults().Mode, ModeAudit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("WithDefaults() gave %v, want %v", tc.got, tc.want)
			}
		})
	}
}
