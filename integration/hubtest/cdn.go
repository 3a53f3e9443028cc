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
	"time"
)

// cdnLifetime is how long a signed blob URL is valid.
const cdnLifetime = 10 * time.Minute

// signedBlobURL returns the CDN URL of a front blob path
// (/v2/<repo>/blobs/<digest>), signed like a CDN's presigned URL.
func (h *Hub) signedBlobURL(frontPath string) string {
	rest := strings.TrimPrefix(frontPath, "/v2/")
	exp := strconv.FormatInt(time.Now().Add(cdnLifetime).Unix(), 10)
	q := url.Values{"exp": {exp}, "sig": {h.sign(rest, exp)}}
	return h.CDNURL + "/" + rest + "?" + q.Encode()
}

// sign returns the HMAC of a blob path and expiry.
func (h *Hub) sign(rest, exp string) string {
	m := hmac.New(sha256.New, h.signKey)
	m.Write([]byte(rest + "|" + exp))
	return hex.EncodeToString(m.Sum(nil))
}

// serveCDN serves signed blob URLs from the registry. Like Docker Hub's
// CDN, which rejects requests that carry a registry token, it refuses any
// request with an Authorization header.
func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.Counters.CDNAll.Add(1)
	if r.Header.Get("Authorization") != "" {
		h.Counters.CDNAuthRejected.Add(1)
		http.Error(w, "requests to the CDN must not carry an Authorization header", http.StatusForbidden)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/")
	exp := r.URL.Query().Get("exp")
	expUnix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || time.Now().Unix() > expUnix ||
		!hmac.Equal([]byte(r.URL.Query().Get("sig")), []byte(h.sign(rest, exp))) {
		http.Error(w, "bad or expired signature", http.StatusForbidden)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, h.RegistryURL+"/v2/"+rest, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, k := range []string{"Range", "If-None-Match", "If-Range"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Length", "Content-Range", "Content-Type", "Etag", "Accept-Ranges", "Docker-Content-Digest"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	if r.Method == http.MethodGet {
		h.Counters.CDNGET.Add(1)
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := io.Copy(w, resp.Body)
	h.Counters.CDNBytes.Add(n)
}
