package hubtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// tokenInfo is what an issued token grants.
type tokenInfo struct {
	subject string
	repos   map[string]bool // repositories the token may pull
	expires time.Time
}

// serveToken is the token realm: GET /token?service=…&scope=…, anonymous
// or with Basic credentials, answering like auth.docker.io. Repositories
// the subject may not pull are left out of the token's access.
func (h *Hub) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	subject := ""
	if user, pass, ok := r.BasicAuth(); ok {
		if want, known := h.opts.Users[user]; !known || want != pass {
			h.Counters.TokenDenied.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"details":"incorrect username or password"}`))
			return
		}
		subject = user
	}
	info := tokenInfo{subject: subject, repos: map[string]bool{}, expires: time.Now().Add(h.opts.TokenLifetime)}
	for _, scope := range r.URL.Query()["scope"] {
		parts := strings.Split(scope, ":")
		if len(parts) != 3 || parts[0] != "repository" || !slices.Contains(strings.Split(parts[2], ","), "pull") {
			continue
		}
		if h.mayPull(subject, parts[1]) {
			info.repos[parts[1]] = true
		}
	}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	h.mu.Lock()
	h.tokens[token] = info
	h.mu.Unlock()
	h.Counters.Tokens.Add(1)
	answer := map[string]any{
		"token":        token,
		"access_token": token,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	}
	if !h.opts.OmitExpiresIn {
		answer["expires_in"] = int(h.opts.TokenLifetime / time.Second)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// mayPull reports whether subject ("" for anonymous) may pull repo.
func (h *Hub) mayPull(subject, repo string) bool {
	allowed, private := h.opts.Private[repo]
	return !private || (subject != "" && slices.Contains(allowed, subject))
}

// ExpireTokens invalidates every token issued so far: the front answers
// 401 with error="invalid_token" to requests that present one.
func (h *Hub) ExpireTokens() {
	h.mu.Lock()
	defer h.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for k, info := range h.tokens {
		info.expires = past
		h.tokens[k] = info
	}
}

// tokenFor returns the token info of an Authorization header and whether a
// bearer token was presented at all.
func (h *Hub) tokenFor(r *http.Request) (tokenInfo, bool, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return tokenInfo{}, false, false
	}
	h.mu.Lock()
	info, known := h.tokens[token]
	h.mu.Unlock()
	return info, true, known && time.Now().Before(info.expires)
}

// decodeJSON decodes a JSON response body.
func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}
