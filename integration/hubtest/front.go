package hubtest

import (
	"fmt"
	"net/http"
	"strings"
)

// serveFront is the registry front: it demands a token for every request,
// counts what it serves, sends rate-limit headers on manifests, enforces
// the pull budget, redirects blob GETs to the CDN and proxies the rest to
// the registry.
func (h *Hub) serveFront(w http.ResponseWriter, r *http.Request) {
	h.Counters.FrontAll.Add(1)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	path := r.URL.Path
	info, presented, valid := h.tokenFor(r)
	if path == "/v2/" || path == "/v2" {
		if !valid {
			h.unauthorized(w, "", presented)
			return
		}
		h.Counters.Base.Add(1)
		h.registry.ServeHTTP(w, r)
		return
	}
	repo, kind := splitPath(path)
	if repo == "" {
		http.NotFound(w, r)
		return
	}
	if !valid || !info.repos[repo] {
		h.unauthorized(w, repo, presented)
		return
	}
	get := r.Method == http.MethodGet
	switch kind {
	case "manifests":
		if get {
			h.Counters.ManifestGET.Add(1)
		} else {
			h.Counters.ManifestHEAD.Add(1)
		}
		if !h.rateLimit(w, get) {
			return
		}
	case "blobs":
		if get {
			h.Counters.BlobGET.Add(1)
			http.Redirect(w, r, h.signedBlobURL(path), http.StatusTemporaryRedirect)
			return
		}
		h.Counters.BlobHEAD.Add(1)
	case "tags":
		h.Counters.TagsList.Add(1)
	case "referrers":
		h.Counters.Referrers.Add(1)
		if !h.opts.Referrers {
			writeOCIError(w, http.StatusNotFound, "NOT_FOUND", "the referrers API is not available")
			return
		}
	default:
		h.Counters.Other.Add(1)
	}
	h.registry.ServeHTTP(w, r)
}

// splitPath returns the repository and the endpoint kind of a /v2/ path.
func splitPath(path string) (repo, kind string) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", ""
	}
	for _, marker := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, marker); i > 0 {
			return rest[:i], strings.Trim(marker, "/")
		}
	}
	return "", ""
}

// unauthorized answers 401 with a Bearer challenge like Docker Hub's.
func (h *Hub) unauthorized(w http.ResponseWriter, repo string, presented bool) {
	h.Counters.Unauthorized.Add(1)
	ch := fmt.Sprintf(`Bearer realm="%s",service="%s"`, h.RealmURL, h.Service)
	if repo != "" {
		ch += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		if presented {
			ch += `,error="insufficient_scope"`
		}
	} else if presented {
		ch += `,error="invalid_token"`
	}
	w.Header().Set("Www-Authenticate", ch)
	writeOCIError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
}

// rateLimit sends the rate-limit headers and spends the budget on a GET;
// it answers 429 and returns false when the budget is spent.
func (h *Hub) rateLimit(w http.ResponseWriter, spend bool) bool {
	h.mu.Lock()
	limit := h.opts.PullLimit
	shown := limit
	if shown <= 0 {
		shown = 100
	}
	over := false
	if spend {
		if limit > 0 && h.pullsUsed >= limit {
			over = true
		} else {
			h.pullsUsed++
		}
	}
	remaining := max(shown-h.pullsUsed, 0)
	h.mu.Unlock()
	window := int(h.opts.RateWindow.Seconds())
	w.Header().Set("Ratelimit-Limit", fmt.Sprintf("%d;w=%d", shown, window))
	w.Header().Set("Ratelimit-Remaining", fmt.Sprintf("%d;w=%d", remaining, window))
	w.Header().Set("Docker-Ratelimit-Source", "127.0.0.1")
	if over {
		h.Counters.TooMany.Add(1)
		writeOCIError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "You have reached your pull rate limit.")
		return false
	}
	return true
}

// writeOCIError writes an OCI error body.
func writeOCIError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`+"\n", code, message)
}
