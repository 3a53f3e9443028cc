package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// A client may bring its own registry credentials (docker login, an auths
// entry, containerd's hosts credentials). The mirror offers the token dance
// that clients know from Docker Hub: the API root answers 401 with a Bearer
// challenge whose realm is the mirror's own token endpoint; a client asks
// it for a token, anonymously or with Basic credentials, and presents the
// token on every request. The token is opaque and stands for the
// credentials, which stay in memory: the mirror uses them, on that
// client's behalf only, in its own token dance with the one upstream they
// were given for. A request without any Authorization is anonymous, so
// clients that do not ping the API root (containerd) pull public content
// without a token, and are challenged only for what the upstream refuses
// them.

// TokenPath is the path of the mirror's token endpoint. A repository name
// component cannot start with an underscore, so it never shadows one.
const TokenPath = "/v2/_token"

type siteAuthKey struct{}

// WithSiteAuthenticated marks a request whose client the site itself
// authenticated (Caddy's basic_auth, say): its Authorization header belongs
// to the site, so the mirror neither reads it nor challenges the client.
func WithSiteAuthenticated(ctx context.Context) context.Context {
	return context.WithValue(ctx, siteAuthKey{}, true)
}

// siteAuthenticated reports whether WithSiteAuthenticated marked ctx.
func siteAuthenticated(ctx context.Context) bool {
	v, _ := ctx.Value(siteAuthKey{}).(bool)
	return v
}

// client is what the mirror knows of a request's client.
type client struct {
	// cred are its own credentials, if it brought any.
	cred clientCredentials
	// authenticated is set when it presented a token of the mirror or
	// credentials (anonymous tokens included).
	authenticated bool
}

// clientOf returns the client of a request, from its Authorization
// header; an error (a 401 asking for a new token) when it presents a token
// the mirror does not know or that expired.
func (m *Mirror) clientOf(r *http.Request) (client, error) {
	if m.cfg.IgnoreClientCredentials || siteAuthenticated(r.Context()) {
		return client{}, nil
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return client{}, nil
	}
	scheme, rest, _ := strings.Cut(auth, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		cred, ok := m.clientTokens.lookup(strings.TrimSpace(rest), m.now())
		if !ok {
			e := oci.Errorf(http.StatusUnauthorized, oci.CodeUnauthorized, "the token is unknown or expired: request a new one")
			e.Challenges = []string{m.bearerChallenge(r, "", "invalid_token")}
			return client{}, e
		}
		return client{cred: cred, authenticated: true}, nil
	case strings.EqualFold(scheme, "Basic"):
		user, pass, ok := r.BasicAuth()
		if !ok || len(user) > maxUsernameLen || len(pass) > maxPasswordLen {
			return client{}, oci.Errorf(http.StatusBadRequest, oci.CodeUnauthorized, "malformed Basic credentials")
		}
		cred := clientCredentials{registry: m.credentialRegistry(r), username: user, password: pass}
		if cred.registry == "" {
			return client{}, nil // a registry this mirror does not serve: resolve refuses it
		}
		accepted, err := m.checkCredentials(r, cred)
		if err != nil {
			return client{}, err
		}
		if !accepted {
			// Credentials the upstream refuses (those of a proxy in front of
			// the mirror, say) make the client anonymous, not locked out.
			return client{}, nil
		}
		return client{cred: cred, authenticated: true}, nil
	}
	return client{}, oci.Errorf(http.StatusBadRequest, oci.CodeUnauthorized, "unsupported authorization scheme")
}

// realm returns the URL of the mirror's token endpoint as the client
// reaches it, with the ns parameter of the request (so that credentials
// asked for there are bound to that registry).
func (m *Mirror) realm(r *http.Request) string {
	base := m.cfg.TokenRealm
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host + TokenPath
	}
	if ns := r.URL.Query().Get("ns"); ns != "" {
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		base += sep + "ns=" + url.QueryEscape(ns)
	}
	return base
}

// bearerChallenge returns the Bearer challenge that points a client at the
// token endpoint, for scope (empty for none) with an error code.
func (m *Mirror) bearerChallenge(r *http.Request, scope, errCode string) string {
	ch := `Bearer realm=` + strconv.Quote(m.realm(r)) + `,service=` + strconv.Quote(r.Host)
	if scope != "" {
		ch += `,scope=` + strconv.Quote(scope)
	}
	if errCode != "" {
		ch += `,error=` + strconv.Quote(errCode)
	}
	return ch
}

// challenges returns the WWW-Authenticate values of a 401 for repository
// name, or nil when the client cannot be challenged: the mirror ignores
// client credentials, or the site authenticated the client itself.
func (m *Mirror) challenges(r *http.Request, name string) []string {
	if m.cfg.IgnoreClientCredentials || siteAuthenticated(r.Context()) {
		return nil
	}
	scope := ""
	if name != "" {
		scope = "repository:" + name + ":pull"
	}
	return []string{m.bearerChallenge(r, scope, "insufficient_scope"), `Basic realm=` + strconv.Quote(r.Host)}
}

// serveBaseAuth answers the API version check: 200 to a client that
// presented credentials or a token (or that the site authenticated),
// else 401 with the Bearer challenge, so that clients which decide at this
// check whether to authenticate at all (Docker, podman) learn where to.
func (m *Mirror) serveBaseAuth(w http.ResponseWriter, r *http.Request) {
	c, err := m.clientOf(r)
	if err != nil {
		m.writeError(w, r, err)
		return
	}
	if !c.authenticated && !m.cfg.IgnoreClientCredentials && !siteAuthenticated(r.Context()) {
		e := oci.Errorf(http.StatusUnauthorized, oci.CodeUnauthorized, "authentication required: get a token (anonymous tokens are free)")
		e.Challenges = []string{m.bearerChallenge(r, "", "")}
		m.writeError(w, r, e)
		return
	}
	m.serveBase(w, r)
}

// serveToken answers the token endpoint: GET with optional Basic
// credentials (the Docker token protocol), or POST with an OAuth2 password
// grant (what containerd sends when it has credentials). Credentials are
// checked with the upstream they are for (see credentialRegistry) before a
// token stands for them; while that upstream cannot be reached they are
// taken as given, and the upstream judges them on use. Anonymous clients
// all get the same token.
func (m *Mirror) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(oci.APIVersionHeader, oci.APIVersion)
	if m.cfg.IgnoreClientCredentials {
		m.writeError(w, r, oci.Errorf(http.StatusNotFound, oci.CodeUnsupported, "this mirror does not take client credentials"))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		m.writeError(w, r, oci.Errorf(http.StatusMethodNotAllowed, oci.CodeUnsupported, "the token endpoint takes GET or POST"))
		return
	}
	var cred clientCredentials
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			m.writeError(w, r, oci.Errorf(http.StatusBadRequest, oci.CodeUnsupported, "malformed token request form"))
			return
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			m.writeError(w, r, oci.Errorf(http.StatusBadRequest, oci.CodeUnsupported, "unsupported grant_type: only password grants are issued"))
			return
		}
		cred.username, cred.password = r.PostForm.Get("username"), r.PostForm.Get("password")
	} else if user, pass, ok := r.BasicAuth(); ok && !siteAuthenticated(r.Context()) {
		cred.username, cred.password = user, pass
	}
	if !cred.zero() {
		if len(cred.username) > maxUsernameLen || len(cred.password) > maxPasswordLen {
			m.writeError(w, r, oci.Errorf(http.StatusBadRequest, oci.CodeUnauthorized, "credentials too long"))
			return
		}
		if cred.registry = m.credentialRegistry(r); cred.registry == "" {
			m.writeError(w, r, notMirrored(r.URL.Query().Get("ns")))
			return
		}
		accepted, err := m.checkCredentials(r, cred)
		if err != nil {
			m.writeError(w, r, err)
			return
		}
		if !accepted {
			m.writeError(w, r, oci.Errorf(http.StatusUnauthorized, oci.CodeUnauthorized,
				"the upstream registry %s refused these credentials", cred.registry))
			return
		}
	}
	now := m.now()
	token := m.clientTokens.issue(cred, now)
	body, _ := json.Marshal(map[string]any{
		"token": token, "access_token": token,
		"expires_in": int(clientTokenLifetime / time.Second), "issued_at": now.UTC().Format(time.RFC3339),
	})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// credentialRegistry returns the registry that credentials presented
// with r are for: the one named by its ns parameter (containerd's
// hosts.toml of that registry, and the token realm the mirror gives such
// requests), else the default upstream. Empty when ns names a registry
// this mirror does not serve. Credentials are never tried with another
// registry: a client has one login per host, and its Docker Hub token
// must not reach ghcr.io because it pulled an image by a ghcr.io/ path.
func (m *Mirror) credentialRegistry(r *http.Request) string {
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		return m.defaultName
	}
	registry := CanonicalRegistry(ns)
	if _, ok := m.upstreams[registry]; !ok {
		return ""
	}
	return registry
}

// checkCredentials asks cred's upstream whether it accepts them, going by
// a standing verdict when there is one. An upstream that cannot answer
// says nothing: the credentials are taken as given (and judged by the
// upstream on use), and nothing is remembered. Checks without a verdict
// are bounded per client address and overall (LoginLimits): a client
// over them gets 429 and the upstream is not asked.
func (m *Mirror) checkCredentials(r *http.Request, cred clientCredentials) (bool, error) {
	ctx := r.Context()
	now := m.now()
	if accepted, known := m.clientTokens.verdictOf(cred, now); known {
		return accepted, nil
	}
	addr := clientPrefix(m.cfg.ClientAddress(r))
	if wait, ok := m.loginLimit.take(addr, now); !ok {
		m.stats.loginThrottled.Add(1)
		m.throttleLog.Event(zap.String("client", addr.String()))
		return false, throttledLogin(wait)
	}
	u := m.upstreams[cred.registry]
	if err := m.upstreamSlots.acquire(ctx); err != nil {
		return false, err
	}
	err := u.Verify(ctx, upstream.Login(cred.username, cred.password))
	m.upstreamSlots.release()
	var ue *upstream.Error
	switch {
	case err == nil:
		m.clientTokens.setVerdict(cred, true, now)
		m.loginLimit.refund(addr, m.now())
		return true, nil
	case errors.As(err, &ue) && (ue.Status == http.StatusUnauthorized || ue.Status == http.StatusForbidden):
		m.clientTokens.setVerdict(cred, false, now)
		if ce := m.log.Check(zap.DebugLevel, "client credentials refused by the upstream"); ce != nil {
			ce.Write(zap.String("upstream", u.Name()), zap.String("client", addr.String()))
		}
		return false, nil
	case ctx.Err() != nil:
		return false, ctx.Err()
	default:
		m.credCheckLog.Event(zap.String("upstream", u.Name()), zap.Error(err))
		return true, nil
	}
}
