package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

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

type credentialsKey struct{}

// WithCredentials returns a context whose requests authenticate with these
// credentials instead of the configured ones (a client's own login passed
// through the mirror). Tokens are cached per credential.
func WithCredentials(ctx context.Context, username, password string) context.Context {
	return context.WithValue(ctx, credentialsKey{}, credentials{username, password})
}

// tokenKey identifies a cached token.
type tokenKey struct{ realm, service, scope, cred string }

// cachedToken is a token and when it stops being used.
type cachedToken struct {
	token   string
	expires time.Time
}

// tokenCall is a token fetch shared by concurrent callers.
type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

// tokenCache holds tokens until shortly before they expire, and lets
// concurrent requests for one key share one fetch.
type tokenCache struct {
	mu       sync.Mutex
	tokens   map[tokenKey]cachedToken
	inflight map[tokenKey]*tokenCall
}

// get returns a valid token for key, fetching one when there is none (or
// when refresh is set, because the upstream refused the cached one).
func (tc *tokenCache) get(ctx context.Context, key tokenKey, now time.Time, refresh bool,
	fetch func(context.Context) (string, time.Time, error)) (string, error) {
	tc.mu.Lock()
	if tc.tokens == nil {
		tc.tokens = make(map[tokenKey]cachedToken)
		tc.inflight = make(map[tokenKey]*tokenCall)
	}
	if refresh {
		delete(tc.tokens, key)
	} else if t, ok := tc.tokens[key]; ok && now.Before(t.expires) {
		tc.mu.Unlock()
		return t.token, nil
	}
	call, ok := tc.inflight[key]
	if !ok {
		call = &tokenCall{done: make(chan struct{})}
		tc.inflight[key] = call
		go func() {
			token, expires, err := fetch(context.WithoutCancel(ctx))
			tc.mu.Lock()
			if err == nil {
				tc.tokens[key] = cachedToken{token: token, expires: expires}
			}
			delete(tc.inflight, key)
			tc.mu.Unlock()
			call.token, call.err = token, err
			close(call.done)
		}()
	}
	tc.mu.Unlock()
	select {
	case <-call.done:
		return call.token, call.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// tokenAnswer is a token realm's JSON answer.
type tokenAnswer struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// fetchToken asks a token realm for a token of scope. Credentials are sent
// only when sendCreds is set (the realm is trusted with them).
func (c *Client) fetchToken(ctx context.Context, realm, service, scope string, cred credentials, sendCreds bool) (string, time.Time, error) {
	u, err := url.Parse(realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", time.Time{}, fmt.Errorf("upstream %s: token realm %q is not an http(s) URL", c.cfg.Name, realm)
	}
	q := u.Query()
	if service != "" {
		q.Set("service", service)
	}
	if scope != "" {
		q.Add("scope", scope)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(withKind(ctx, "token"), http.MethodGet, u.String(), nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("upstream %s: token request: %w", c.cfg.Name, err)
	}
	if sendCreds && !cred.empty() {
		req.SetBasicAuth(cred.username, cred.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("upstream %s: token realm %s: %w", c.cfg.Name, u.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		e := errorFromResponse(c.cfg.Name, resp)
		if len(e.Items) == 0 {
			code := oci.CodeUnauthorized
			if e.Status == http.StatusForbidden {
				code = oci.CodeDenied
			}
			e.Items = []oci.ErrorItem{{Code: code, Message: "the token realm refused the request"}}
		}
		if e.Status >= 500 || e.Status == http.StatusTooManyRequests {
			return "", time.Time{}, e
		}
		// Any refusal of the realm is an authentication failure to clients.
		if e.Status != http.StatusForbidden {
			e.Status = http.StatusUnauthorized
		}
		return "", time.Time{}, e
	}
	defer resp.Body.Close()
	var ans tokenAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenBody)).Decode(&ans); err != nil {
		return "", time.Time{}, fmt.Errorf("upstream %s: reading token answer: %w", c.cfg.Name, err)
	}
	token := ans.Token
	if token == "" {
		token = ans.AccessToken
	}
	if token == "" {
		return "", time.Time{}, fmt.Errorf("upstream %s: token answer has no token", c.cfg.Name)
	}
	now := c.now()
	issued := now
	if t, err := time.Parse(time.RFC3339, ans.IssuedAt); err == nil && t.Before(now) {
		issued = t
	}
	lifetime := time.Duration(ans.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = defaultTokenLifetime
	}
	margin := min(30*time.Second, lifetime/10)
	return token, issued.Add(lifetime - margin), nil
}
