package hubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"
)

// route is a parsed /v2/ path of the front.
type route struct {
	kind string // "base", "catalog", "manifests", "blobs", "tags", "referrers", "upload", "" (unknown)
	repo string
	ref  string // tag or digest of manifests, digest of blobs and referrers
}

var (
	reRepoItem = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|referrers)/([^/]+)$`)
	reTags     = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
	reUpload   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads(/.*)?$`)
)

// parseRoute classifies a /v2/ path. Repository names are checked by the
// registry, not here.
func parseRoute(path string) route {
	switch {
	case path == "/v2/" || path == "/v2":
		return route{kind: "base"}
	case path == "/v2/_catalog":
		return route{kind: "catalog"}
	case reUpload.MatchString(path):
		return route{kind: "upload", repo: reUpload.FindStringSubmatch(path)[1]}
	}
	if m := reTags.FindStringSubmatch(path); m != nil {
		return route{kind: "tags", repo: m[1]}
	}
	if m := reRepoItem.FindStringSubmatch(path); m != nil {
		return route{kind: m[2], repo: m[1], ref: m[3]}
	}
	return route{}
}

// serveFront is the registry front, behaving like registry-1.docker.io:
// it demands a token for every request, counts what it serves, applies
// the active fault, sends rate-limit headers on manifests and enforces the
// pull budget, redirects blob GETs to the CDN and proxies the rest to the
// registry.
func (h *Hub) serveFront(w http.ResponseWriter, r *http.Request) {
	h.Counters.FrontAll.Add(1)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt := parseRoute(r.URL.Path)
	switch {
	case rt.kind == "":
		writeOCIError(w, http.StatusNotFound, "NOT_FOUND", "no such endpoint")
		return
	case rt.kind == "upload" || (r.Method != http.MethodGet && r.Method != http.MethodHead):
		writeOCIError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry serves pulls only")
		return
	}
	info, state := h.tokenFor(r)
	if state != tokenValid || (rt.repo != "" && !info.repos[rt.repo]) {
		h.unauthorized(w, rt.repo, state)
		return
	}
	get := r.Method == http.MethodGet
	target := targetOther
	switch rt.kind {
	case "base":
		h.Counters.Base.Add(1)
	case "catalog":
		h.Counters.Catalog.Add(1)
	case "manifests":
		target = TargetManifest
		if get {
			h.Counters.ManifestGET.Add(1)
		} else {
			h.Counters.ManifestHEAD.Add(1)
		}
	case "blobs":
		target = TargetBlob
		if get {
			h.Counters.BlobGET.Add(1)
		} else {
			h.Counters.BlobHEAD.Add(1)
		}
	case "tags":
		h.Counters.TagsList.Add(1)
	case "referrers":
		h.Counters.Referrers.Add(1)
	}
	// A blob GET answers with a redirect, its body the CDN's, unless the
	// front serves blobs itself.
	redirect := get && rt.kind == "blobs" && !h.opts.DirectBlobs
	if get && rt.kind == "blobs" {
		b := h.Counters.countBlobGET(rt.ref, r)
		if redirect {
			b.redirects.Add(1)
		} else {
			defer b.start()()
			w = &countingWriter{ResponseWriter: w, ns: []*atomic.Int64{&b.bytes}}
		}
	}
	w, faults, answered := h.applyFaults(w, r, faultPoint{target: target, body: get && !redirect, redirect: redirect, digest: rt.ref, rangeFirst: rangeFirst(r)})
	if answered {
		return
	}
	switch rt.kind {
	case "manifests":
		if !h.rateLimit(w, get) {
			return
		}
	case "blobs":
		if redirect {
			http.Redirect(w, r, h.signedBlobURL(rt.repo, rt.ref, urlLifetime(faults)), http.StatusTemporaryRedirect)
			return
		}
	case "referrers":
		if !h.opts.Referrers {
			writeOCIError(w, http.StatusNotFound, "NOT_FOUND", "the referrers API is not available")
			return
		}
		h.serveReferrers(w, r, rt)
		return
	}
	h.registry.ServeHTTP(w, r)
}

// unauthorized answers 401 with a Bearer challenge like Docker Hub's: the
// scope names the repository, and error says why a presented token was
// refused.
func (h *Hub) unauthorized(w http.ResponseWriter, repo string, state tokenState) {
	h.Counters.Unauthorized.Add(1)
	challenge := fmt.Sprintf(`Bearer realm=%q,service=%q`, h.RealmURL, h.Service)
	if repo != "" {
		challenge += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
	}
	switch state {
	case tokenInvalid:
		challenge += `,error="invalid_token"`
	case tokenValid:
		challenge += `,error="insufficient_scope"`
	}
	w.Header().Set("Www-Authenticate", challenge)
	var detail any
	if repo != "" {
		detail = []map[string]string{{"Type": "repository", "Class": "", "Name": repo, "Action": "pull"}}
	}
	writeOCIErrorDetail(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", detail)
}

// rateLimit sends the rate-limit headers of a manifest answer and, for a
// GET, spends one pull. It answers 429 and returns false when the budget
// is spent.
func (h *Hub) rateLimit(w http.ResponseWriter, spend bool) bool {
	h.mu.Lock()
	limit := h.pullLimit
	shown := limit
	if shown <= 0 {
		shown = 100
	}
	over := spend && limit > 0 && h.pullsUsed >= limit
	if spend && !over {
		h.pullsUsed++
		if limit <= 0 && h.pullsUsed >= shown {
			// Unlimited: a budget that reports 0 left would be a lie a
			// client may act on; start a new window instead.
			h.pullsUsed = 0
		}
	}
	remaining := max(shown-h.pullsUsed, 0)
	h.mu.Unlock()
	window := int(h.opts.RateWindow / time.Second)
	w.Header().Set("Ratelimit-Limit", fmt.Sprintf("%d;w=%d", shown, window))
	w.Header().Set("Ratelimit-Remaining", fmt.Sprintf("%d;w=%d", remaining, window))
	w.Header().Set("Docker-Ratelimit-Source", "127.0.0.1")
	if over {
		h.Counters.TooMany.Add(1)
		writeOCIError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS",
			"You have reached your unauthenticated pull rate limit.")
		return false
	}
	return true
}

// writeOCIError writes an OCI error body with one item.
func writeOCIError(w http.ResponseWriter, status int, code, message string) {
	writeOCIErrorDetail(w, status, code, message, nil)
}

// writeOCIErrorDetail writes an OCI error body with one item and a detail.
func writeOCIErrorDetail(w http.ResponseWriter, status int, code, message string, detail any) {
	item := map[string]any{"code": code, "message": message}
	if detail != nil {
		item["detail"] = detail
	}
	body, _ := json.Marshal(map[string]any{"errors": []any{item}})
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
