package mirror

import (
	"context"
	"net/http"
	"strings"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// target is where one request goes: an upstream and the repository there.
type target struct {
	upstream *upstream.Client
	// registry is the upstream's canonical name, the key of cached tags.
	registry string
	// repo is the repository at the upstream, after library/ normalisation.
	repo string
	// clientName is the repository as the client wrote it in the path, for
	// links that point back at this mirror.
	clientName string
	// cred are the credentials requests for the client go upstream with:
	// its own for this registry, else the zero Credentials (the
	// configured ones).
	cred upstream.Credentials
	// who is the client's identity at the upstream, from which every key
	// of a remembered answer derives.
	who access.Principal
}

// forClient returns t for client c: with c's credentials when it brought
// some for t's registry (credentials given for another registry are not
// used: the client is anonymous there), else as the default identity.
func (t target) forClient(c client) target {
	if c.cred.zero() || c.cred.registry != t.registry {
		return t
	}
	t.cred = upstream.Login(c.cred.username, c.cred.password)
	t.who = access.NewPrincipal(t.upstream.CredentialID(t.cred), t.upstream.DefaultCredentialID())
	return t
}

// do sends req to t's upstream with the credentials of t's client: every
// upstream request of the mirror goes through it, so none forgets them.
func (t target) do(ctx context.Context, req upstream.Request) (*http.Response, error) {
	req.Credentials = t.cred
	return t.upstream.Do(ctx, req)
}

// mayGet asks t's upstream whether req, a request counted against its
// pull budget, may be sent now (see upstream.Client.MayGet), with the
// credentials of t's client: the HEAD that learns the budget is refused
// as the GET would be, by the same identity.
func (t target) mayGet(ctx context.Context, req upstream.Request) error {
	req.Credentials = t.cred
	return t.upstream.MayGet(ctx, req)
}

// resolve picks the upstream and repository for a request: containerd's ns
// query parameter first, then a leading registry host in the path, then the
// default upstream. Only configured upstreams are reachable: naming any
// other registry is refused before any connection is made.
func (m *Mirror) resolve(r *http.Request, name string) (target, error) {
	t := target{clientName: name}
	registry := ""
	repo := name
	if ns := r.URL.Query().Get("ns"); ns != "" {
		registry = CanonicalRegistry(ns)
		if _, ok := m.upstreams[registry]; !ok {
			return t, notMirrored(ns)
		}
		// A client may still spell the registry in the path as well.
		if host, rest, ok := oci.SplitHost(name); ok && CanonicalRegistry(host) == registry {
			repo = rest
		}
	} else if host, rest, ok := oci.SplitHost(name); ok {
		registry = CanonicalRegistry(host)
		if _, ok := m.upstreams[registry]; !ok {
			return t, notMirrored(host)
		}
		repo = rest
	} else {
		registry = m.defaultName
	}
	if registry == DockerHub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	if err := oci.ValidateName(repo); err != nil {
		return t, err
	}
	return newTarget(m.upstreams[registry], registry, repo, name), nil
}

// newTarget returns the target of repo at registry's client u, as the
// mirror's default identity asks for it (forClient makes it a client's).
// Every target is made here, so none goes without its identity.
func newTarget(u *upstream.Client, registry, repo, clientName string) target {
	def := u.DefaultCredentialID()
	return target{
		upstream:   u,
		registry:   registry,
		repo:       repo,
		clientName: clientName,
		who:        access.NewPrincipal(def, def),
	}
}

// notMirrored is the answer for a registry this mirror does not serve.
func notMirrored(registry string) error {
	if len(registry) > 64 {
		registry = registry[:64] + "…"
	}
	return oci.Errorf(http.StatusNotFound, oci.CodeNameUnknown,
		"registry %q is not mirrored here", registry)
}
