package hubtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// startHub starts a hub that the test closes when it ends.
func startHub(t *testing.T, opts Options) *Hub {
	t.Helper()
	h, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// fakeClock is an injectable clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// frontRef parses a reference to the front.
func frontRef(t *testing.T, h *Hub, repo, tagOrDigest string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(h.Ref(repo, tagOrDigest), name.Insecure)
	if err != nil {
		t.Fatalf("parsing %s: %v", h.Ref(repo, tagOrDigest), err)
	}
	return ref
}

// token fetches a token for scopes from the realm, optionally with Basic
// credentials (user "" for anonymous).
func token(t *testing.T, h *Hub, user, pass string, scopes ...string) string {
	t.Helper()
	q := url.Values{"service": {h.Service}, "scope": scopes}
	req, err := http.NewRequest(http.MethodGet, h.RealmURL+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var ans struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusOK || ans.Token == "" {
		t.Fatalf("token answer: status %d, err %v", resp.StatusCode, err)
	}
	return ans.Token
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// frontGet sends method path to the front with a bearer token ("" for
// none) and returns the answer with its body read.
func frontGet(t *testing.T, h *Hub, method, path, tok string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, body
}

// sha256Digest returns the sha256 digest of b.
func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// errorCode returns the first OCI error code of a body.
func errorCode(body []byte) string {
	var b struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &b) != nil || len(b.Errors) == 0 {
		return ""
	}
	return b.Errors[0].Code
}

func TestPullThroughFront(t *testing.T) {
	h := startHub(t, Options{})
	tests := []struct {
		name string
		oci  bool
		want string
	}{
		{"docker schema 2", false, "application/vnd.docker.distribution.manifest.v2+json"},
		{"oci", true, "application/vnd.oci.image.manifest.v1+json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := "library/demo-" + strings.ReplaceAll(tc.name, " ", "-")
			_, want, err := h.PushImage(repo, "1", 2, 4096, tc.oci)
			if err != nil {
				t.Fatal(err)
			}
			h.Counters.Reset()
			img, err := remote.Image(frontRef(t, h, repo, "1"), remote.WithAuth(authn.Anonymous))
			if err != nil {
				t.Fatalf("pulling through the front: %v", err)
			}
			if err := validate.Image(img); err != nil {
				t.Fatalf("validating the pulled image: %v", err)
			}
			if d, _ := img.Digest(); d.String() != want {
				t.Errorf("digest %s, want %s", d, want)
			}
			if mt, _ := img.MediaType(); string(mt) != tc.want {
				t.Errorf("media type %s, want %s", mt, tc.want)
			}
			layers, _ := img.Layers()
			for _, l := range layers {
				if mt, _ := l.MediaType(); tc.oci != strings.HasPrefix(string(mt), "application/vnd.oci.") {
					t.Errorf("layer media type %s with oci=%v", mt, tc.oci)
				}
			}
			c := h.Counters
			if c.Tokens.Load() < 1 || c.Unauthorized.Load() < 1 || c.ManifestGET.Load() != 1 {
				t.Errorf("no token dance or no manifest GET: %s", c)
			}
			if c.BlobGET.Load() < 3 || c.CDNGET.Load() != c.BlobGET.Load() {
				t.Errorf("every blob GET must be redirected to and served by the CDN: %s", c)
			}
			if c.CDNAuthRejected.Load() != 0 {
				t.Errorf("the client sent Authorization to the CDN: %s", c)
			}
		})
	}
}

func TestPullIndexThroughFront(t *testing.T) {
	h := startHub(t, Options{})
	for _, oci := range []bool{false, true} {
		repo := fmt.Sprintf("library/multi-%v", oci)
		_, want, err := h.PushIndex(repo, "v1", []string{"linux/amd64", "linux/arm64/v8"}, oci)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(frontRef(t, h, repo, "v1"))
		if err != nil {
			t.Fatalf("pulling the index: %v", err)
		}
		if err := validate.Index(idx); err != nil {
			t.Errorf("validating the index: %v", err)
		}
		if d, _ := idx.Digest(); d.String() != want {
			t.Errorf("index digest %s, want %s", d, want)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range m.Manifests {
			got = append(got, d.Platform.String())
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := img.ConfigFile()
			if err != nil || cfg.Platform().String() != d.Platform.String() {
				t.Errorf("child %s: config platform %v (err %v)", d.Platform, cfg.Platform(), err)
			}
		}
		if strings.Join(got, ",") != "linux/amd64,linux/arm64/v8" {
			t.Errorf("oci=%v: platforms %v", oci, got)
		}
		if mt := string(m.MediaType); oci != (mt == "application/vnd.oci.image.index.v1+json") {
			t.Errorf("oci=%v: media type %s", oci, mt)
		}
	}
}

func TestChallenges(t *testing.T) {
	h := startHub(t, Options{})
	if _, _, err := h.PushImage("library/a", "1", 1, 512, false); err != nil {
		t.Fatal(err)
	}
	good := token(t, h, "", "", "repository:library/a:pull")
	other := token(t, h, "", "", "repository:library/b:pull")
	base := fmt.Sprintf(`Bearer realm=%q,service=%q`, h.RealmURL, h.Service)
	tests := []struct {
		name      string
		path      string
		token     string
		status    int
		challenge string
	}{
		{"base without token", "/v2/", "", 401, base},
		{"base with unknown token", "/v2/", "bogus", 401, base + `,error="invalid_token"`},
		{"base with any token", "/v2/", other, 200, ""},
		{"manifest without token", "/v2/library/a/manifests/1", "", 401, base + `,scope="repository:library/a:pull"`},
		{"manifest with unknown token", "/v2/library/a/manifests/1", "bogus", 401, base + `,scope="repository:library/a:pull",error="invalid_token"`},
		{"manifest with another scope", "/v2/library/a/manifests/1", other, 401, base + `,scope="repository:library/a:pull",error="insufficient_scope"`},
		{"manifest with the scope", "/v2/library/a/manifests/1", good, 200, ""},
		{"tags with the scope", "/v2/library/a/tags/list", good, 200, ""},
		{"referrers are not served", "/v2/library/a/referrers/sha256:" + strings.Repeat("0", 64), good, 404, ""},
		{"unknown endpoint", "/v2/library/a/nothing", good, 404, ""},
		{"uploads are refused", "/v2/library/a/blobs/uploads/", good, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := frontGet(t, h, http.MethodGet, tc.path, tc.token)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("Www-Authenticate"); got != tc.challenge {
				t.Errorf("challenge\n got %s\nwant %s", got, tc.challenge)
			}
			if tc.status == 401 && errorCode(body) != "UNAUTHORIZED" {
				t.Errorf("401 body %s, want an UNAUTHORIZED error", body)
			}
			if resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Errorf("no API version header")
			}
		})
	}
}

func TestBlobRedirectAndCDN(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	h := startHub(t, Options{Now: clock.Now})
	const size = 256 << 10
	layer, _, err := h.PushLargeBlobImage("library/big", "1", size, 7)
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, h, "", "", "repository:library/big:pull")
	resp, _ := frontGet(t, h, http.MethodGet, "/v2/library/big/blobs/"+layer, tok)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, h.CDNURL+"/blobs/library/big/"+layer+"?") {
		t.Fatalf("blob GET: status %d, Location %q", resp.StatusCode, loc)
	}
	if resp, _ := frontGet(t, h, http.MethodHead, "/v2/library/big/blobs/"+layer, tok); resp.StatusCode != 200 || resp.ContentLength != size {
		t.Errorf("blob HEAD: status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	tests := []struct {
		name    string
		url     string
		header  map[string]string
		advance time.Duration
		status  int
		bytes   int64
	}{
		{"signed", loc, nil, 0, 200, size},
		{"range", loc, map[string]string{"Range": "bytes=10-19"}, 0, 206, 10},
		{"with Authorization", loc, map[string]string{"Authorization": "Bearer " + tok}, 0, 403, 0},
		{"bad signature", strings.Replace(loc, "sig=", "sig=0", 1), nil, 0, 403, 0},
		{"other blob", strings.Replace(loc, layer, "sha256:"+strings.Repeat("1", 64), 1), nil, 0, 403, 0},
		{"expired", loc, nil, time.Hour, 403, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(tc.advance)
			h.Counters.Reset()
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := h.Counters.CDNBytes.Load(); got != tc.bytes || (tc.status < 300 && int64(len(body)) != tc.bytes) {
				t.Errorf("CDN bytes %d, body %d, want %d", got, len(body), tc.bytes)
			}
			if tc.status == 200 && sha256Digest(body) != layer {
				t.Errorf("CDN body digest %s, want %s", sha256Digest(body), layer)
			}
			if tc.status == 206 && resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", size) {
				t.Errorf("Content-Range %q", resp.Header.Get("Content-Range"))
			}
			wantRejected := int64(0)
			if tc.header["Authorization"] != "" {
				wantRejected = 1
			}
			if got := h.Counters.CDNAuthRejected.Load(); got != wantRejected {
				t.Errorf("CDNAuthRejected = %d, want %d", got, wantRejected)
			}
		})
	}
}

func TestPrivateRepository(t *testing.T) {
	h := startHub(t, Options{
		Users:   map[string]string{"alice": "pw-a", "bob": "pw-b"},
		Private: map[string][]string{"corp/secret": {"alice"}},
	})
	if _, _, err := h.PushImage("corp/secret", "1", 1, 1024, true); err != nil {
		t.Fatal(err)
	}
	keychain := func(user, pass string) authn.Keychain {
		return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}
	}
	ref := frontRef(t, h, "corp/secret", "1")
	tests := []struct {
		name   string
		opt    remote.Option
		ok     bool
		denied int64 // token requests refused for bad credentials
	}{
		{"allowed user", remote.WithAuthFromKeychain(keychain("alice", "pw-a")), true, 0},
		{"other user", remote.WithAuthFromKeychain(keychain("bob", "pw-b")), false, 0},
		{"wrong password", remote.WithAuth(&authn.Basic{Username: "alice", Password: "nope"}), false, 1},
		{"anonymous", remote.WithAuth(authn.Anonymous), false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.Counters.Reset()
			_, err := remote.Image(ref, tc.opt)
			if tc.ok {
				if err != nil {
					t.Fatalf("pull refused: %v", err)
				}
				return
			}
			if got := h.Counters.TokenDenied.Load(); got != tc.denied {
				t.Errorf("TokenDenied = %d, want %d", got, tc.denied)
			}
			if tc.denied > 0 {
				if err == nil {
					t.Fatal("pull with a wrong password succeeded")
				}
				return
			}
			var terr *transport.Error
			if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized || len(terr.Errors) == 0 ||
				terr.Errors[0].Code != transport.UnauthorizedErrorCode {
				t.Errorf("pull error %v, want 401 UNAUTHORIZED", err)
			}
		})
	}
}

// staticKeychain resolves every registry to one authenticator.
type staticKeychain struct{ auth authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, nil }

func TestTokenExpiry(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	h := startHub(t, Options{Now: clock.Now, TokenLifetime: time.Minute})
	if _, _, err := h.PushImage("library/t", "1", 1, 512, false); err != nil {
		t.Fatal(err)
	}
	const path = "/v2/library/t/manifests/1"
	tok := token(t, h, "", "", "repository:library/t:pull")
	if resp, _ := frontGet(t, h, http.MethodHead, path, tok); resp.StatusCode != 200 {
		t.Fatalf("fresh token: status %d", resp.StatusCode)
	}
	clock.Advance(59 * time.Second)
	if resp, _ := frontGet(t, h, http.MethodHead, path, tok); resp.StatusCode != 200 {
		t.Fatalf("token before its expiry: status %d", resp.StatusCode)
	}
	clock.Advance(time.Second)
	resp, _ := frontGet(t, h, http.MethodGet, path, tok)
	if resp.StatusCode != 401 || !strings.HasSuffix(resp.Header.Get("Www-Authenticate"), `,error="invalid_token"`) {
		t.Errorf("expired token: status %d, challenge %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}

	tok = token(t, h, "", "", "repository:library/t:pull")
	h.ExpireTokens()
	resp, _ = frontGet(t, h, http.MethodGet, path, tok)
	if resp.StatusCode != 401 || !strings.HasSuffix(resp.Header.Get("Www-Authenticate"), `,error="invalid_token"`) {
		t.Errorf("token after ExpireTokens: status %d, challenge %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
}

func TestClientRenewsExpiredToken(t *testing.T) {
	h := startHub(t, Options{})
	if _, _, err := h.PushImage("library/renew", "1", 1, 512, false); err != nil {
		t.Fatal(err)
	}
	puller, err := remote.NewPuller()
	if err != nil {
		t.Fatal(err)
	}
	ref := frontRef(t, h, "library/renew", "1")
	if _, err := puller.Get(context.Background(), ref); err != nil {
		t.Fatalf("first pull: %v", err)
	}
	h.ExpireTokens()
	h.Counters.Reset()
	if _, err := puller.Get(context.Background(), ref); err != nil {
		t.Fatalf("pull after ExpireTokens: %v", err)
	}
	if h.Counters.Unauthorized.Load() != 1 || h.Counters.Tokens.Load() != 1 || h.Counters.ManifestGET.Load() != 1 {
		t.Errorf("want one 401, one new token and one manifest GET: %s", h.Counters)
	}
}

func TestTokenAnswer(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want map[string]bool // fields present
		exp  float64
	}{
		{"default", Options{}, map[string]bool{"token": true, "access_token": true, "issued_at": true, "expires_in": true}, 300},
		{"lifetime", Options{TokenLifetime: 90 * time.Second}, map[string]bool{"expires_in": true}, 90},
		{"no expires_in", Options{OmitExpiresIn: true}, map[string]bool{"token": true, "expires_in": false}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startHub(t, tc.opts)
			resp, err := http.Get(h.RealmURL + "?service=" + url.QueryEscape(h.Service) + "&scope=repository:x:pull")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ans map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
				t.Fatal(err)
			}
			for k, present := range tc.want {
				if _, ok := ans[k]; ok != present {
					t.Errorf("field %s present=%v, want %v: %v", k, ok, present, ans)
				}
			}
			if tc.exp != 0 && ans["expires_in"] != tc.exp {
				t.Errorf("expires_in %v, want %v", ans["expires_in"], tc.exp)
			}
			if ans["token"] != nil && ans["token"] != ans["access_token"] {
				t.Errorf("token and access_token differ: %v", ans)
			}
			if bad, _ := http.Get(h.RealmURL + "?service=other"); bad == nil || bad.StatusCode != 400 {
				t.Errorf("a token for another service was not refused")
			} else {
				bad.Body.Close()
			}
		})
	}
}

func TestPullLimit(t *testing.T) {
	h := startHub(t, Options{PullLimit: 2})
	if _, _, err := h.PushImage("library/limited", "1", 1, 1024, false); err != nil {
		t.Fatal(err)
	}
	tok := token(t, h, "", "", "repository:library/limited:pull")
	const path = "/v2/library/limited/manifests/1"
	steps := []struct {
		method    string
		status    int
		limit     string
		remaining string
	}{
		{http.MethodHead, 200, "2;w=21600", "2;w=21600"},
		{http.MethodGet, 200, "2;w=21600", "1;w=21600"},
		{http.MethodHead, 200, "2;w=21600", "1;w=21600"},
		{http.MethodGet, 200, "2;w=21600", "0;w=21600"},
		{http.MethodHead, 200, "2;w=21600", "0;w=21600"},
		{http.MethodGet, 429, "2;w=21600", "0;w=21600"},
	}
	for i, s := range steps {
		resp, body := frontGet(t, h, s.method, path, tok)
		if resp.StatusCode != s.status || resp.Header.Get("Ratelimit-Limit") != s.limit ||
			resp.Header.Get("Ratelimit-Remaining") != s.remaining || resp.Header.Get("Docker-Ratelimit-Source") == "" {
			t.Errorf("step %d %s: status %d limit %q remaining %q, want %d %q %q", i, s.method, resp.StatusCode,
				resp.Header.Get("Ratelimit-Limit"), resp.Header.Get("Ratelimit-Remaining"), s.status, s.limit, s.remaining)
		}
		if s.status == 429 && errorCode(body) != "TOOMANYREQUESTS" {
			t.Errorf("step %d: 429 body %s", i, body)
		}
	}
	if h.Counters.TooMany.Load() != 1 || h.Counters.ManifestGET.Load() != 3 || h.Counters.ManifestHEAD.Load() != 3 {
		t.Errorf("counters: %s", h.Counters)
	}
	h.SetPullLimit(0)
	resp, _ := frontGet(t, h, http.MethodGet, path, tok)
	if resp.StatusCode != 200 || resp.Header.Get("Ratelimit-Limit") != "100;w=21600" || resp.Header.Get("Ratelimit-Remaining") != "99;w=21600" {
		t.Errorf("after SetPullLimit(0): status %d limit %q remaining %q", resp.StatusCode,
			resp.Header.Get("Ratelimit-Limit"), resp.Header.Get("Ratelimit-Remaining"))
	}
}

func TestPushLargeBlobImage(t *testing.T) {
	h := startHub(t, Options{})
	const size = 64 << 20
	layer, manifest, err := h.PushLargeBlobImage("library/large", "1", size, 42)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(frontRef(t, h, "library/large", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != manifest {
		t.Errorf("manifest digest %s, want %s", d, manifest)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, err %v", len(layers), err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hash := sha256.New()
	n, err := io.Copy(hash, rc)
	if err != nil {
		t.Fatalf("reading the layer: %v", err)
	}
	if got := "sha256:" + hex.EncodeToString(hash.Sum(nil)); got != layer || n != size {
		t.Errorf("layer %s of %d bytes, want %s of %d", got, n, layer, size)
	}
	if got := h.Counters.CDNBytes.Load(); got != size {
		t.Errorf("CDN bytes %d, want %d", got, size)
	}
}

// TestPushSeededImage pushes an image of three seeded layers and reads
// every layer back through the front and the CDN.
func TestPushSeededImage(t *testing.T) {
	h := startHub(t, Options{})
	const size = 1 << 20
	layers, manifest, err := h.PushSeededImage("library/seeded", "1", size, 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(frontRef(t, h, "library/seeded", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != manifest {
		t.Errorf("manifest digest %s, want %s", d, manifest)
	}
	got, err := img.Layers()
	if err != nil || len(got) != 3 {
		t.Fatalf("layers %d, err %v", len(got), err)
	}
	for i, l := range got {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		want, _ := io.ReadAll(SeededBlob(size, int64(i+1)))
		if err != nil || sha256Digest(b) != layers[i] || string(b) != string(want) {
			t.Errorf("layer %d: %s, %v; want %s", i, sha256Digest(b), err, layers[i])
		}
	}
}

func TestParseRoute(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		path string
		want route
	}{
		{"/v2/", route{kind: "base"}},
		{"/v2", route{kind: "base"}},
		{"/v2/_catalog", route{kind: "catalog"}},
		{"/v2/library/nginx/manifests/latest", route{kind: "manifests", repo: "library/nginx", ref: "latest"}},
		{"/v2/a/manifests/b/manifests/" + d, route{kind: "manifests", repo: "a/manifests/b", ref: d}},
		{"/v2/x/blobs/" + d, route{kind: "blobs", repo: "x", ref: d}},
		{"/v2/x/y/z/tags/list", route{kind: "tags", repo: "x/y/z"}},
		{"/v2/x/referrers/" + d, route{kind: "referrers", repo: "x", ref: d}},
		{"/v2/x/blobs/uploads/", route{kind: "upload", repo: "x"}},
		{"/v2/x/blobs/uploads/1234", route{kind: "upload", repo: "x"}},
		{"/v2/x/other", route{}},
		{"/v3/x/manifests/1", route{}},
	}
	for _, tc := range tests {
		if got := parseRoute(tc.path); got != tc.want {
			t.Errorf("parseRoute(%q) = %+v, want %+v", tc.path, got, tc.want)
		}
	}
}

func TestCounters(t *testing.T) {
	var c Counters
	if c.String() != "(all zero)" || c.Upstream() != 0 {
		t.Errorf("zero counters: %q, upstream %d", c.String(), c.Upstream())
	}
	c.FrontAll.Add(2)
	c.RealmAll.Add(1)
	c.CDNAll.Add(3)
	c.CDNBytes.Add(100)
	if got := c.Upstream(); got != 6 {
		t.Errorf("Upstream() = %d, want 6", got)
	}
	if got, want := c.String(), "front_all=2 realm_all=1 cdn_all=3 cdn_bytes=100"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	c.Reset()
	if c.Upstream() != 0 || c.CDNBytes.Load() != 0 {
		t.Errorf("after Reset: %s", c.String())
	}
}
