package mirror

import (
	"context"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/regcache/regcache/oci"
)

// AuditClient is who sent a request, as the server in front of the mirror
// knows it.
type AuditClient struct {
	// Address is the client's IP address (the server's idea of it, which
	// may come from a trusted proxy's header).
	Address string
	// User is the user the site authenticated (basic_auth, say); empty
	// when none.
	User string
}

// auditClientKey carries an AuditClient in a request's context.
type auditClientKey struct{}

// WithAuditClient returns ctx carrying who sent the request, for the
// audit log. Without it, the audit log takes the request's RemoteAddr.
func WithAuditClient(ctx context.Context, c AuditClient) context.Context {
	return context.WithValue(ctx, auditClientKey{}, c)
}

// auditPull writes the audit line of an image pull: a client's manifest
// GET answered with the manifest (status 200). HEADs, conditional
// answers (304), errors, and the requests of Warm and Sync are not
// pulls. A Docker pull (HEAD by tag, GET by digest) makes one line; a
// multi-platform pull makes one for the index and one for the platform's
// manifest. The user is the site's authenticated user, else the name the
// client logged in to the mirror with; never a credential.
func (m *Mirror) auditPull(r *http.Request, route oci.Route, t target, cl client, cw *countingWriter) {
	if m.audit == nil || route.Kind != oci.KindManifest || r.Method != http.MethodGet ||
		cw.status != http.StatusOK || internal(r.Context()) {
		return
	}
	who, ok := r.Context().Value(auditClientKey{}).(AuditClient)
	if !ok {
		who.Address = r.RemoteAddr
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			who.Address = host
		}
	}
	if who.User == "" && cl.authenticated {
		who.User = cl.cred.username
	}
	m.audit.Info("pull",
		zap.String("client_ip", who.Address),
		zap.String("user", who.User),
		zap.String("upstream", t.registry),
		zap.String("repository", t.repo),
		zap.String("reference", route.Reference),
		zap.String("digest", cw.Header().Get(oci.ContentDigestHeader)),
		zap.String("media_type", cw.Header().Get("Content-Type")),
		zap.String("source", sourceName(cw.source)),
	)
}

// sourceName is the audit log's name of a source.
func sourceName(s source) string {
	switch s {
	case sourceUpstream:
		return "upstream"
	case sourceStale:
		return "stale"
	}
	return "cache"
}
