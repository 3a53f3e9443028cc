package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// Whether a client may be served what the cache holds is for the access
// package to decide (access.Decisions): the mirror tells it what the
// upstream answered each identity, and asks it before serving.

// DefaultAccessTTL is how long an upstream's decision to let an identity
// pull a repository, or not, is trusted when Config.AccessTTL is zero.
const DefaultAccessTTL = access.DefaultTTL

type upstreamDownKey struct{}

// withUpstreamDown marks ctx as serving while the upstream just failed to
// answer, so that access checks go by what is known instead of asking it
// once more.
func withUpstreamDown(ctx context.Context) context.Context {
	return context.WithValue(ctx, upstreamDownKey{}, true)
}

// refusal reports whether err is the upstream refusing access (401, 403).
func refusal(err error) (*upstream.Error, bool) {
	var ue *upstream.Error
	if errors.As(err, &ue) && (ue.Status == http.StatusUnauthorized || ue.Status == http.StatusForbidden) {
		return ue, true
	}
	return nil, false
}

// refused is refusal for access.Decisions.
func refused(err error) bool {
	_, ok := refusal(err)
	return ok
}

// checkFailed reports whether an access check's error means the upstream
// could not answer (see staleAllowed) or no upstream slot was free.
func checkFailed(err error) bool {
	return staleAllowed(err) || errors.Is(err, errBusy)
}

// noteAccess records what an upstream answer to a request for t says
// about t's identity (see access.Decisions.Note).
func (m *Mirror) noteAccess(t target, err error) {
	m.decisions.Note(t.who, t.registry, t.repo, err)
}

// link records that the upstream served d under t's repository.
func (m *Mirror) link(t target, d digest.Digest) {
	m.decisions.Link(t.registry, t.repo, d)
}

// mayServe decides whether t's client may be served object d (a manifest
// or a blob, by kind) of t's repository from the cache or from a fill
// that another request started: by what is known, else by one HEAD of d
// made with the client's credentials (see access.Decisions.Check).
func (m *Mirror) mayServe(ctx context.Context, t target, kind oci.Kind, d digest.Digest) error {
	down, _ := ctx.Value(upstreamDownKey{}).(bool)
	c := m.decisions.Check(t.who, t.registry, t.repo, kind, d, down)
	if settled, err := c.Settled(); settled {
		return err
	}
	return m.decisions.Ask(ctx, c, func(ctx context.Context) error { return m.probe(ctx, t, kind, d) })
}

// probe asks the upstream with a HEAD whether t's client may pull d under
// t's repository.
func (m *Mirror) probe(ctx context.Context, t target, kind oci.Kind, d digest.Digest) error {
	path := "blobs/" + d.String()
	hdr := http.Header{}
	if kind == oci.KindManifest {
		path = "manifests/" + d.String()
		hdr.Set("Accept", oci.AcceptHeader(digestAccept))
	}
	resp, err := m.upstreamDo(ctx, t, upstream.Request{Method: http.MethodHead, Repository: t.repo, Path: path, Header: hdr})
	if err != nil {
		return fmt.Errorf("checking access to %s@%s: %w", t.repo, d, err)
	}
	_ = resp.Body.Close()
	return nil
}

// accessRecords are the mirror's links and grants as access.Records.
type accessRecords struct{ s Records }

func (r accessRecords) Link(upstream, repo string, d digest.Digest) error {
	return closedAsAccess(r.s.Link(upstream, repo, d))
}

func (r accessRecords) Linked(upstream, repo string, d digest.Digest) bool {
	return r.s.Linked(upstream, repo, d)
}

func (r accessRecords) GrantOf(upstream, repo string) (access.Grant, error) {
	g, err := r.s.GrantOf(upstream, repo)
	return access.Grant(g), closedAsAccess(err)
}

func (r accessRecords) LocalGrant(upstream, repo string) (access.Grant, error) {
	g, err := r.s.LocalGrant(upstream, repo)
	return access.Grant(g), closedAsAccess(err)
}

func (r accessRecords) SetGrant(upstream, repo string, g access.Grant) error {
	return closedAsAccess(r.s.SetGrant(upstream, repo, cache.Grant(g)))
}

func (r accessRecords) RefreshGrant(upstream, repo string, g access.Grant) access.Grant {
	return access.Grant(r.s.RefreshGrant(upstream, repo, cache.Grant(g)))
}

func (r accessRecords) DeleteGrant(upstream, repo string) error {
	return closedAsAccess(r.s.DeleteGrant(upstream, repo))
}

// closedAsAccess marks the error of a closed store as access.ErrClosed.
func closedAsAccess(err error) error {
	if errors.Is(err, cache.ErrClosed) {
		return fmt.Errorf("%w: %w", access.ErrClosed, err)
	}
	return err
}

// Interface guards
var _ access.Records = accessRecords{}
