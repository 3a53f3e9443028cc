package hubtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// tokenInfo is what an issued token grants.
type tokenInfo struct {
	subject string          // user name, "" for anonymous
	repos   map[string]bool // repositories the token may pull
	expires time.Time
}

// tokenState is how a request's bearer token stands.
type tokenState int

const (
	tokenNone    tokenState = iota // no bearer token presented
	tokenInvalid                   // unknown or expired token
	tokenValid                     // a live token
)

// serveToken is the token realm, answering like auth.docker.io:
// GET /token?service=…&scope=repository:<name>:pull[&scope=…], anonymous
// or with Basic credentials. Repositories the subject may not pull are
// left out of the token's access rather than refused.
func (h *Hub) serveToken(w http.ResponseWriter, r *http.Request) {
	h.Counters.RealmAll.Add(1)
	if r.URL.Path != "/token" {
		writeJSON(w, http.StatusNotFound, map[string]string{"details": "not found"})
		return
	}
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"details": "only GET is served"})
		return
	}
	w, _, answered := h.applyFaults(w, r, faultPoint{target: TargetToken, body: true, rangeFirst: -1})
	if answered {
		return
	}
	q := r.URL.Query()
	if s := q.Get("service"); s != "" && s != h.Service {
		writeJSON(w, http.StatusBadRequest, map[string]string{"details": "unknown service " + s})
		return
	}
	subject := ""
	if user, pass, ok := r.BasicAuth(); ok {
		if want, known := h.opts.Users[user]; !known || want != pass {
			h.Counters.TokenDenied.Add(1)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"details": "incorrect username or password"})
			return
		}
		subject = user
	}
	now := h.now()
	info := tokenInfo{subject: subject, repos: map[string]bool{}, expires: now.Add(h.opts.TokenLifetime)}
	for _, scope := range q["scope"] {
		// Several scopes may also come space-separated in one parameter.
		for _, s := range strings.Fields(scope) {
			parts := strings.Split(s, ":")
			if len(parts) != 3 || parts[0] != "repository" || !slices.Contains(strings.Split(parts[2], ","), "pull") {
				continue
			}
			if h.mayPull(subject, parts[1]) {
				info.repos[parts[1]] = true
			}
		}
	}
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	h.mu.Lock()
	if len(h.tokens) >= maxTokens {
		for k, old := range h.tokens {
			if !now.Before(old.expires) {
				delete(h.tokens, k)
			}
		}
	}
	h.tokens[token] = info
	h.mu.Unlock()
	h.Counters.Tokens.Add(1)
	answer := map[string]any{
		"token":        token,
		"access_token": token,
		"issued_at":    now.UTC().Format(time.RFC3339),
	}
	if !h.opts.OmitExpiresIn {
		answer["expires_in"] = int(h.opts.TokenLifetime / time.Second)
	}
	writeJSON(w, http.StatusOK, answer)
}

// maxTokens is the number of issued tokens above which expired ones are
// forgotten when a new one is issued.
const maxTokens = 4096

// mayPull reports whether subject ("" for anonymous) may pull repo.
func (h *Hub) mayPull(subject, repo string) bool {
	allowed, private := h.opts.Private[repo]
	return !private || (subject != "" && slices.Contains(allowed, subject))
}

// ExpireTokens makes every token issued so far invalid: the front answers
// requests that present one with 401 and error="invalid_token", so a
// client must fetch a new token.
func (h *Hub) ExpireTokens() {
	h.mu.Lock()
	clear(h.tokens)
	h.mu.Unlock()
}

// tokenFor returns the grants of the request's bearer token and how the
// token stands.
func (h *Hub) tokenFor(r *http.Request) (tokenInfo, tokenState) {
	auth := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return tokenInfo{}, tokenNone
	}
	h.mu.Lock()
	info, known := h.tokens[token]
	h.mu.Unlock()
	if !known || !h.now().Before(info.expires) {
		return tokenInfo{}, tokenInvalid
	}
	return info, tokenValid
}

// writeJSON writes v as a JSON body with an exact Content-Length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
