package mirror

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// clientTokenLifetime is how long a token of the mirror is valid.
const clientTokenLifetime = 5 * time.Minute

// maxClientTokens bounds the tokens, and separately the verdicts on
// credentials, kept in memory.
const maxClientTokens = 10000

// How long the upstream's verdict on a client's credentials is trusted
// before they are checked again: an acceptance for as long as a token
// lives, a refusal for a minute (so that a wrong password is not tried
// upstream at the pace of a client's retries).
const (
	acceptedLifetime = 5 * time.Minute
	refusedLifetime  = time.Minute
)

// Bounds of credentials a client may present: more is refused, so that
// no client can make the mirror hold large values in memory.
const (
	maxUsernameLen = 256
	maxPasswordLen = 8192
)

// clientCredentials are what a client authenticated with, and the
// registry they are for: they are never sent to another.
type clientCredentials struct {
	registry, username, password string
}

// zero reports whether c carries no credentials (an anonymous client).
func (c clientCredentials) zero() bool { return c.username == "" && c.password == "" }

// credentialsHash identifies credentials in the verdicts without holding
// them: a flood of refused guesses leaves no password in memory.
type credentialsHash [sha256.Size]byte

// hash returns c's credentialsHash.
func (c clientCredentials) hash() credentialsHash {
	return sha256.Sum256([]byte(c.registry + "\x00" + c.username + "\x00" + c.password))
}

// clientToken is one issued token.
type clientToken struct {
	cred    clientCredentials
	expires time.Time
}

// verdict is what the upstream said of credentials, until when it holds.
type verdict struct {
	accepted bool
	until    time.Time
}

// clientTokens holds the tokens the mirror issued for credentials and the
// upstream's verdicts on credentials. Every anonymous client gets the same
// token, which costs no memory, so that free anonymous token requests
// cannot push out the tokens of clients that logged in.
type clientTokens struct {
	mu        sync.Mutex
	anonymous string
	tokens    map[string]clientToken
	verdicts  map[credentialsHash]verdict
}

// newClientTokens returns an empty store with its anonymous token.
func newClientTokens() *clientTokens {
	return &clientTokens{anonymous: randomToken(), tokens: map[string]clientToken{}, verdicts: map[credentialsHash]verdict{}}
}

// randomToken returns 24 random bytes in hex.
func randomToken() string {
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	return hex.EncodeToString(raw)
}

// issue returns a token for cred: the anonymous token when cred is zero.
func (ts *clientTokens) issue(cred clientCredentials, now time.Time) string {
	if cred.zero() {
		return ts.anonymous
	}
	token := randomToken()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.tokens) >= maxClientTokens {
		shrink(ts.tokens, func(t clientToken) bool { return !now.Before(t.expires) })
	}
	ts.tokens[token] = clientToken{cred: cred, expires: now.Add(clientTokenLifetime)}
	return token
}

// lookup returns the credentials of a valid token (zero ones for the
// anonymous token).
func (ts *clientTokens) lookup(token string, now time.Time) (clientCredentials, bool) {
	if token == ts.anonymous {
		return clientCredentials{}, true
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.tokens[token]
	if !ok || !now.Before(t.expires) {
		return clientCredentials{}, false
	}
	return t.cred, true
}

// verdictOf returns the upstream's standing verdict on cred, if any.
func (ts *clientTokens) verdictOf(cred clientCredentials, now time.Time) (accepted, known bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	v, ok := ts.verdicts[cred.hash()]
	if !ok || !now.Before(v.until) {
		return false, false
	}
	return v.accepted, true
}

// setVerdict remembers the upstream's verdict on cred.
func (ts *clientTokens) setVerdict(cred clientCredentials, accepted bool, now time.Time) {
	lifetime := refusedLifetime
	if accepted {
		lifetime = acceptedLifetime
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.verdicts) >= maxClientTokens {
		shrink(ts.verdicts, func(v verdict) bool { return !now.Before(v.until) })
	}
	ts.verdicts[cred.hash()] = verdict{accepted: accepted, until: now.Add(lifetime)}
}

// shrink drops the entries of a full map that expired and, when that is
// not enough, arbitrary ones down to three quarters of maxClientTokens: one
// pass over the map per quarter of inserts, whatever a flood of requests
// does.
func shrink[K comparable, V any](m map[K]V, expired func(V) bool) {
	for k, v := range m {
		if expired(v) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) < maxClientTokens*3/4 {
			break
		}
		delete(m, k)
	}
}
