package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/oci"
)

// defaultTokenLifetime applies when a token answer has no expires_in.
const defaultTokenLifetime = 60 * time.Second

// maxTokenBody caps a token answer.
const maxTokenBody = 1 << 20

// credentials are a username and password (or access token).
type credentials struct{ username, password string }

// empty reports whether there are no credentials.
func (c credentials) empty() bool { return c.username == "" && c.password == "" }

// id identifies the credentials in cache keys without holding them.
func (c credentials) id() string {
	if c.empty() {
		return ""
	}
	sum := sha256.Sum256([]byte(c.username + "\x00" + c.password))
	return hex.EncodeToString(sum[:8])
}

// credentialsFor returns the credentials a request authenticates with:
// its own (see Login), else the configured ones.
func (c *Client) credentialsFor(req Request) credentials {
	if req.Credentials.own {
		return req.Credentials.cred
	}
	return credentials{c.cfg.Username, c.cfg.Password}
}

// tokenKey identifies a cached token. cred is a hash of the credentials
// sent to the realm (empty when anonymous), never the credentials.
type tokenKey struct{ realm, service, scope, cred string }

// cachedToken is a token and when it stops being used.
type cachedToken struct {
	token   string
	expires time.Time
}

// tokenCall is a token fetch shared by concurrent callers.
type tokenCall struct {
	done    chan struct{}
	waiters int // callers sharing the fetch, under tokenCache.mu
	token   string
	err     error
}

// minSweep is the cache size below which expired tokens are not swept.
const minSweep = 256

// tokenFetchTimeout bounds one token fetch, which runs on after the
// request that started it is cancelled so that others may share it.
const tokenFetchTimeout = 60 * time.Second

// tokenCache holds tokens until shortly before they expire, and lets
// concurrent requests for one key share one fetch.
type tokenCache struct {
	mu        sync.Mutex
	tokens    map[tokenKey]cachedToken
	inflight  map[tokenKey]*tokenCall
	nextSweep int
}

// get returns a valid token for key, fetching one when there is none, or
// when refresh is set because the upstream refused the cached one. fetch
// returns the token and the time it stops being used.
func (tc *tokenCache) get(ctx context.Context, key tokenKey, now func() time.Time, refresh bool,
	fetch func(context.Context) (string, time.Time, error)) (string, error) {
	tc.mu.Lock()
	if tc.tokens == nil {
		tc.tokens = make(map[tokenKey]cachedToken)
		tc.inflight = make(map[tokenKey]*tokenCall)
	}
	if refresh {
		delete(tc.tokens, key)
	} else if t, ok := tc.tokens[key]; ok && now().Before(t.expires) {
		tc.mu.Unlock()
		return t.token, nil
	}
	call, ok := tc.inflight[key]
	if !ok {
		call = &tokenCall{done: make(chan struct{})}
		tc.inflight[key] = call
		go tc.fill(ctx, key, call, now, fetch)
	}
	call.waiters++
	tc.mu.Unlock()
	select {
	case <-call.done:
		return call.token, call.err
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
}

// fill runs one fetch for key and hands its result to every waiter.
func (tc *tokenCache) fill(ctx context.Context, key tokenKey, call *tokenCall, now func() time.Time,
	fetch func(context.Context) (string, time.Time, error)) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenFetchTimeout)
	defer cancel()
	token, expires, err := fetch(fctx)
	tc.mu.Lock()
	if err == nil {
		tc.tokens[key] = cachedToken{token: token, expires: expires}
		tc.sweepLocked(now())
	}
	delete(tc.inflight, key)
	tc.mu.Unlock()
	call.token, call.err = token, err
	close(call.done)
}

// sweepLocked drops expired tokens once the cache has doubled since the
// last sweep, so that per-credential tokens do not pile up.
func (tc *tokenCache) sweepLocked(now time.Time) {
	if len(tc.tokens) < max(tc.nextSweep, minSweep) {
		return
	}
	for k, t := range tc.tokens {
		if !now.Before(t.expires) {
			delete(tc.tokens, k)
		}
	}
	tc.nextSweep = 2 * len(tc.tokens)
}

// waiting returns how many callers share the fetch in flight for key.
func (tc *tokenCache) waiting(key tokenKey) int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if call, ok := tc.inflight[key]; ok {
		return call.waiters
	}
	return 0
}

// len returns the number of cached tokens.
func (tc *tokenCache) len() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.tokens)
}

// tokenAnswer is a token realm's JSON answer.
type tokenAnswer struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// fetchToken asks a token realm for a token of scope. Credentials are sent
// only when sendCreds is set (the realm is trusted with them). It returns
// the token and the time it stops being used: issued_at (default now) plus
// expires_in (default 60s) minus min(30s, lifetime/10).
func (c *Client) fetchToken(ctx context.Context, realm, service, scope string, cred credentials, sendCreds bool) (string, time.Time, error) {
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", time.Time{}, fmt.Errorf("upstream %s: token realm is not an http(s) URL", c.cfg.Name)
	}
	q := u.Query()
	if service != "" {
		q.Set("service", service)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("upstream %s: token request: %w", c.cfg.Name, err)
	}
	if sendCreds {
		req.SetBasicAuth(cred.username, cred.password)
	}
	if ce := c.log.Check(zapcore.DebugLevel, "fetching upstream token"); ce != nil {
		ce.Write(zap.String("upstream", c.cfg.Name), zap.String("realm", redactURL(u)),
			zap.String("scope", scope), zap.Bool("credentials", sendCreds))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("upstream %s: token realm %s: %w", c.cfg.Name, u.Host, unwrapURLError(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", time.Time{}, realmError(c.cfg.Name, resp)
	}
	defer resp.Body.Close()
	var ans tokenAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenBody)).Decode(&ans); err != nil {
		return "", time.Time{}, fmt.Errorf("upstream %s: reading token answer of %s: %w", c.cfg.Name, u.Host, err)
	}
	token := ans.Token
	if token == "" {
		token = ans.AccessToken
	}
	if token == "" {
		return "", time.Time{}, fmt.Errorf("upstream %s: token answer of %s has no token", c.cfg.Name, u.Host)
	}
	now := c.now()
	issued := now
	if t, err := time.Parse(time.RFC3339, ans.IssuedAt); err == nil && t.Before(now) {
		issued = t
	}
	lifetime := defaultTokenLifetime
	if ans.ExpiresIn > 0 && ans.ExpiresIn < math.MaxInt64/int64(time.Second) {
		lifetime = time.Duration(ans.ExpiresIn) * time.Second
	}
	margin := min(30*time.Second, lifetime/10)
	return token, issued.Add(lifetime - margin), nil
}

// realmError turns a refusal of the token realm into an *Error. A 5xx or
// 429 keeps its status (the endpoint is failing); any other refusal is an
// authentication failure: 403 stays DENIED, the rest become 401
// UNAUTHORIZED.
func realmError(name string, resp *http.Response) *Error {
	e := errorFromResponse(name, resp)
	if e.Status >= 500 || e.Status == http.StatusTooManyRequests {
		return e
	}
	code := oci.CodeUnauthorized
	if e.Status == http.StatusForbidden {
		code = oci.CodeDenied
	} else {
		e.Status = http.StatusUnauthorized
	}
	if len(e.Items) == 0 {
		e.Items = []oci.ErrorItem{{Code: code, Message: "the token realm refused the request"}}
	}
	return e
}
