package mirror

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

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
// A server in front sets it on every manifest request, HEAD as well as
// GET: a HEAD by tag is a pull too, and the GET by digest that completes
// it is recognised only when both requests name the same client.
func WithAuditClient(ctx context.Context, c AuditClient) context.Context {
	return context.WithValue(ctx, auditClientKey{}, c)
}

// auditPull writes the audit line of an image pull: a client's request
// for a manifest answered with it (status 200), by tag (GET or HEAD) or
// by digest (GET). Docker and containerd ask HEAD by tag, then GET by
// digest (and Docker may skip the GET when it still holds the manifest):
// the HEAD is the pull, and a GET of the digest it answered that comes
// from the same client within a minute is not written again. So a
// single-platform pull writes one line, a multi-platform pull one for
// the index and one for the platform's manifest. HEADs by digest,
// conditional answers (304), errors, and the requests of Warm and Sync
// write none. The user is the site's authenticated user, else the name
// the client logged in to the mirror with; never a credential.
func (m *Mirror) auditPull(r *http.Request, route oci.Route, t target, cl client, cw *countingWriter) {
	if m.cfg.Audit == nil || route.Kind != oci.KindManifest || cw.status != http.StatusOK {
		return
	}
	byDigest := strings.Contains(route.Reference, ":")
	if byDigest && r.Method != http.MethodGet || r.Method != http.MethodGet && r.Method != http.MethodHead {
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
	d := cw.Header().Get(oci.ContentDigestHeader)
	key := who.Address + "\x00" + t.registry + "/" + t.repo + "@" + d
	switch {
	case r.Method == http.MethodHead:
		m.auditedHeads.add(key, m.now())
	case byDigest && m.auditedHeads.take(key, m.now()):
		return // the GET that follows the HEAD of this pull
	}
	m.cfg.Audit.Info("pull",
		zap.String("client_ip", who.Address),
		zap.String("user", who.User),
		zap.String("upstream", t.registry),
		zap.String("repository", t.repo),
		zap.String("reference", route.Reference),
		zap.String("digest", d),
		zap.String("media_type", cw.Header().Get("Content-Type")),
		zap.String("source", sourceName(cw.source)),
	)
}

// Bounds of recentHeads.
const (
	// auditFollowUp is how long after a HEAD by tag a GET of the digest
	// it answered counts as part of the same pull.
	auditFollowUp = time.Minute
	// maxRecentHeads bounds the HEADs remembered.
	maxRecentHeads = 10_000
)

// recentHeads remembers the audited HEADs by tag (client, repository and
// digest) for a minute, so that the GET by digest that completes the
// same pull is not written again. The zero value is ready.
type recentHeads struct {
	mu sync.Mutex
	at map[string]time.Time
}

// add remembers a HEAD of key at now.
func (h *recentHeads) add(key string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.at == nil {
		h.at = make(map[string]time.Time)
	}
	if len(h.at) >= maxRecentHeads {
		for k, at := range h.at {
			if now.Sub(at) >= auditFollowUp {
				delete(h.at, k)
			}
		}
		if len(h.at) >= maxRecentHeads {
			clear(h.at)
		}
	}
	h.at[key] = now
}

// take reports whether a HEAD of key was audited within the minute, and
// forgets it: one GET completes its pull.
func (h *recentHeads) take(key string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.at[key]
	if ok {
		delete(h.at, key)
	}
	return ok && now.Sub(at) < auditFollowUp
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
