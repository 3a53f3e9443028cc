package mirror

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
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

// clientTokenLifetime is how long a token of the mirror is valid.
const clientTokenLifetime = 5 * time.Minute

// maxClientTokens bounds the tokens kept in memory; the oldest go first.
const maxClientTokens = 10000

// verifiedLifetime is how long the upstream's acceptance of a client's
// credentials is trusted before a new token request checks them again.
const verifiedLifetime = 5 * time.Minute

// clientCredentials are what a client authenticated with, and the
// registry they are for: they are never sent to another.
type clientCredentials struct {
	registry, username, password string
}

// clientToken is one issued token.
type clientToken struct {
	cred    clientCredentials // zero: anonymous
	expires time.Time
}

// clientTokens holds the tokens the mirror issued.
type clientTokens struct {
	mu       sync.Mutex
	tokens   map[string]clientToken
	verified map[clientCredentials]time.Time // accepted by the upstream until
}

// issue returns a new token for cred.
func (ts *clientTokens) issue(cred clientCredentials, now time.Time) string {
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.tokens == nil {
		ts.tokens = make(map[string]clientToken)
	}
	if len(ts.tokens) >= maxClientTokens {
		ts.sweep(now)
	}
	ts.tokens[token] = clientToken{cred: cred, expires: now.Add(clientTokenLifetime)}
	return token
}

// sweep drops expired tokens and, when that is not enough, the ones that
// expire first, down to three quarters of the bound. Called with mu held.
func (ts *clientTokens) sweep(now time.Time) {
	for k, t := range ts.tokens {
		if !now.Before(t.expires) {
			delete(ts.tokens, k)
		}
	}
	for len(ts.tokens) > maxClientTokens*3/4 {
		var oldest string
		var at time.Time
		for k, t := range ts.tokens {
			if oldest == "" || t.expires.Before(at) {
				oldest, at = k, t.expires
			}
		}
		delete(ts.tokens, oldest)
	}
	for c, until := range ts.verified {
		if !now.Before(until) {
			delete(ts.verified, c)
		}
	}
}

// lookup returns the credentials of a valid token.
func (ts *clientTokens) lookup(token string, now time.Time) (clientCredentials, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.tokens[token]
	if !ok || !now.Before(t.expires) {
		return clientCredentials{}, false
	}
	return t.cred, true
}

// wasVerified reports whether the upstream accepted cred lately.
func (ts *clientTokens) wasVerified(cred clientCredentials, now time.Time) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	until, ok := ts.verified[cred]
	return ok && now.Before(until)
}

// markVerified remembers that the upstream accepted cred.
func (ts *clientTokens) markVerified(cred clientCredentials, now time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.verified == nil {
		ts.verified = make(map[clientCredentials]time.Time)
	}
	if len(ts.verified) >= maxClientTokens {
		ts.sweep(now)
	}
	ts.verified[cred] = now.Add(verifiedLifetime)
}

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
	if m.ignoreClientCredentials || siteAuthenticated(r.Context()) {
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
		if !ok {
			return client{}, oci.Errorf(http.StatusBadRequest, oci.CodeUnauthorized, "malformed Basic credentials")
		}
		// Credentials sent with a request are for the registry it
		// addresses; withClient binds them once that is known.
		return client{cred: clientCredentials{username: user, password: pass}, authenticated: true}, nil
	}
	return client{}, oci.Errorf(http.StatusBadRequest, oci.CodeUnauthorized, "unsupported authorization scheme")
}

// withClient returns ctx carrying the client's credentials for requests to
// t's upstream, when it brought some for that registry (credentials given
// for another registry are not used: the client is anonymous there), else
// ctx itself.
func withClient(ctx context.Context, c client, t target) context.Context {
	cred := c.cred
	if cred.username == "" && cred.password == "" {
		return ctx
	}
	if cred.registry != "" && cred.registry != t.registry {
		return ctx
	}
	return upstream.WithCredentials(ctx, cred.username, cred.password)
}

// realm returns the URL of the mirror's token endpoint as the client
// reaches it, with the ns parameter of the request (so that credentials
// asked for there are bound to that registry).
func (m *Mirror) realm(r *http.Request) string {
	base := m.tokenRealm
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
	if m.ignoreClientCredentials || siteAuthenticated(r.Context()) {
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
	if !c.authenticated && !m.ignoreClientCredentials && !siteAuthenticated(r.Context()) {
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
// checked with the upstream they are for (the ns parameter, else the
// registry of the first repository scope, else the default upstream)
// before a token stands for them; while that upstream cannot be reached
// they are taken as given, and the upstream judges them on use.
func (m *Mirror) serveToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(oci.APIVersionHeader, oci.APIVersion)
	if m.ignoreClientCredentials {
		m.writeError(w, r, oci.Errorf(http.StatusNotFound, oci.CodeUnsupported, "this mirror does not take client credentials"))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		m.writeError(w, r, oci.Errorf(http.StatusMethodNotAllowed, oci.CodeUnsupported, "the token endpoint takes GET or POST"))
		return
	}
	var cred clientCredentials
	var scopes []string
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
		scopes = strings.Fields(r.PostForm.Get("scope"))
	} else if user, pass, ok := r.BasicAuth(); ok && !siteAuthenticated(r.Context()) {
		cred.username, cred.password = user, pass
	}
	for _, s := range r.URL.Query()["scope"] {
		scopes = append(scopes, strings.Fields(s)...)
	}
	if cred.username != "" || cred.password != "" {
		u, err := m.tokenUpstream(r.URL.Query().Get("ns"), scopes)
		if err != nil {
			m.writeError(w, r, err)
			return
		}
		cred.registry = CanonicalRegistry(u.Name())
		if err := m.verifyClient(r.Context(), u, cred); err != nil {
			m.writeError(w, r, err)
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

// tokenUpstream picks the upstream that a token request's credentials are
// for.
func (m *Mirror) tokenUpstream(ns string, scopes []string) (*upstream.Client, error) {
	if ns != "" {
		u, ok := m.upstreams[CanonicalRegistry(ns)]
		if !ok {
			return nil, notMirrored(ns)
		}
		return u, nil
	}
	for _, s := range scopes {
		parts := strings.Split(s, ":")
		if len(parts) < 3 || parts[0] != "repository" {
			continue
		}
		name := strings.Join(parts[1:len(parts)-1], ":")
		if host, _, ok := oci.SplitHost(name); ok {
			if u, ok := m.upstreams[CanonicalRegistry(host)]; ok {
				return u, nil
			}
		}
		break
	}
	return m.upstreams[m.defaultName], nil
}

// verifyClient checks cred with upstream u, remembering an acceptance for
// a while. A refusal is a 401; an upstream that cannot answer leaves the
// judgement to the requests the credentials are used for.
func (m *Mirror) verifyClient(ctx context.Context, u *upstream.Client, cred clientCredentials) error {
	now := m.now()
	if m.clientTokens.wasVerified(cred, now) {
		return nil
	}
	err := m.upstreamSlots.acquire(ctx)
	if err != nil {
		return err
	}
	err = u.Verify(upstream.WithCredentials(ctx, cred.username, cred.password))
	m.upstreamSlots.release()
	var ue *upstream.Error
	switch {
	case err == nil:
		m.clientTokens.markVerified(cred, now)
		return nil
	case errors.As(err, &ue) && (ue.Status == http.StatusUnauthorized || ue.Status == http.StatusForbidden):
		m.log.Info("client credentials refused by the upstream", zap.String("upstream", u.Name()))
		return oci.Errorf(http.StatusUnauthorized, oci.CodeUnauthorized, "the upstream registry %s refused these credentials", u.Name())
	default:
		m.log.Warn("could not check client credentials with the upstream; issuing a token for them",
			zap.String("upstream", u.Name()), zap.Error(err))
		return nil
	}
}
