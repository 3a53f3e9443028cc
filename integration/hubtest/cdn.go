package hubtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// cdnLifetime is how long a signed blob URL stays valid, unless a
// FaultExpiry says otherwise.
const cdnLifetime = 20 * time.Minute

// signedBlobURL returns the CDN URL of a blob, signed and expiring after
// lifetime like the presigned URLs Docker Hub redirects blob GETs to:
// <CDNURL>/blobs/<repo>/<digest>?exp=<unix milliseconds>&sig=<hmac>.
func (h *Hub) signedBlobURL(repo, digest string, lifetime time.Duration) string {
	path := repo + "/" + digest
	exp := strconv.FormatInt(h.now().Add(lifetime).UnixMilli(), 10)
	q := url.Values{"exp": {exp}, "sig": {h.sign(path, exp)}}
	return h.CDNURL + "/blobs/" + path + "?" + q.Encode()
}

// sign returns the HMAC of a blob path (<repo>/<digest>) and an expiry.
func (h *Hub) sign(path, exp string) string {
	m := hmac.New(sha256.New, h.signKey)
	m.Write([]byte(path + "|" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// cdnRequestHeaders are passed from a CDN request to the registry.
var cdnRequestHeaders = []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since"}

// cdnResponseHeaders are passed from the registry to a CDN client.
var cdnResponseHeaders = []string{"Content-Length", "Content-Range", "Content-Type", "Etag",
	"Accept-Ranges", "Last-Modified", "Docker-Content-Digest"}

// serveCDN serves signed blob URLs from the registry. Like the CDN behind
// Docker Hub, which rejects a request that carries a registry token, it
// refuses any request with an Authorization header. A transfer stops when
// its URL expires. Range requests are passed to the registry, which
// answers them.
func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.Counters.CDNAll.Add(1)
	if r.Header.Get("Authorization") != "" {
		h.Counters.CDNAuthRejected.Add(1)
		http.Error(w, "requests to the CDN must not carry an Authorization header", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/blobs/")
	exp := r.URL.Query().Get("exp")
	expMilli, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || !hmac.Equal([]byte(r.URL.Query().Get("sig")), []byte(h.sign(path, exp))) {
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	expires := time.UnixMilli(expMilli)
	if h.now().After(expires) {
		h.Counters.CDNExpired.Add(1)
		http.Error(w, "expired signature", http.StatusForbidden)
		return
	}
	i := strings.LastIndex(path, "/")
	if i <= 0 {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	digest := path[i+1:]
	get := r.Method == http.MethodGet
	if get {
		h.Counters.CDNGET.Add(1)
		b := h.Counters.countBlobGET(digest, r)
		b.noteCDNRange(r)
		defer b.start()()
		w = &countingWriter{ResponseWriter: w, ns: []*atomic.Int64{&h.Counters.CDNBytes, &b.bytes}}
		w = &expiryWriter{ResponseWriter: w, now: h.now, expires: expires, expired: func() { h.Counters.CDNExpired.Add(1) }}
	}
	w, _, answered := h.applyFaults(w, r, faultPoint{target: TargetBlob, body: get, digest: digest, rangeFirst: rangeFirst(r)})
	if answered {
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method,
		h.RegistryURL+"/v2/"+path[:i]+"/blobs/"+digest, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, k := range cdnRequestHeaders {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := h.transport.RoundTrip(req)
	if err != nil {
		http.Error(w, "origin unreachable: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, k := range cdnResponseHeaders {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if get {
		h.Counters.CDNBodyStart.CompareAndSwap(0, time.Now().UnixNano())
		_, _ = io.Copy(w, resp.Body)
	}
}
