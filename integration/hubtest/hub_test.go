package hubtest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func startHub(t *testing.T, opts Options) *Hub {
	t.Helper()
	h, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func TestPullThroughFront(t *testing.T) {
	h := startHub(t, Options{})
	_, want, err := h.PushImage("library/demo", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(h.Ref("library/demo", "1"), name.Insecure)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != want {
		t.Errorf("digest %s, want %s", d, want)
	}
	// validate reads each layer twice (compressed, uncompressed) and the
	// config once: every blob GET must have been served by the CDN.
	c := h.Counters
	if c.Tokens.Load() < 1 || c.Unauthorized.Load() < 1 || c.ManifestGET.Load() != 1 || c.BlobGET.Load() < 3 || c.CDNGET.Load() != c.BlobGET.Load() {
		t.Errorf("counters after a pull: %s", c)
	}
	if c.CDNAuthRejected.Load() != 0 {
		t.Errorf("a client following the redirect sent Authorization to the CDN: %s", c)
	}
}

func TestCDNRefusesAuthorization(t *testing.T) {
	h := startHub(t, Options{})
	layer, _, err := h.PushLargeBlobImage("library/big", "1", 1<<20, 7)
	if err != nil {
		t.Fatal(err)
	}
	url := h.signedBlobURL("/v2/library/big/blobs/" + layer)
	tests := []struct {
		name   string
		url    string
		auth   string
		status int
	}{
		{"signed, no auth", url, "", http.StatusOK},
		{"signed, with auth", url, "Bearer x", http.StatusForbidden},
		{"bad signature", strings.Replace(url, "sig=", "sig=0", 1), "", http.StatusForbidden},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	if n := h.Counters.CDNAuthRejected.Load(); n != 1 {
		t.Errorf("CDNAuthRejected = %d, want 1", n)
	}
	if n := h.Counters.CDNBytes.Load(); n != 1<<20 {
		t.Errorf("CDNBytes = %d, want %d", n, 1<<20)
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
	ref, _ := name.ParseReference(h.Ref("corp/secret", "1"), name.Insecure)
	tests := []struct {
		name string
		auth authn.Authenticator
		ok   bool
	}{
		{"allowed user", &authn.Basic{Username: "alice", Password: "pw-a"}, true},
		{"other user", &authn.Basic{Username: "bob", Password: "pw-b"}, false},
		{"wrong password", &authn.Basic{Username: "alice", Password: "nope"}, false},
		{"anonymous", authn.Anonymous, false},
	}
	for _, tc := range tests {
		_, err := remote.Image(ref, remote.WithAuth(tc.auth))
		if (err == nil) != tc.ok {
			t.Errorf("%s: pull error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestExpiredTokensAndPullLimit(t *testing.T) {
	h := startHub(t, Options{PullLimit: 2})
	if _, _, err := h.PushImage("library/limited", "1", 1, 1024, false); err != nil {
		t.Fatal(err)
	}
	token := func() string {
		resp, err := http.Get(h.RealmURL + "?service=" + h.Service + "&scope=repository:library/limited:pull")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans struct{ Token string }
		if err := decodeJSON(resp, &ans); err != nil {
			t.Fatal(err)
		}
		return ans.Token
	}
	tok := token()
	do := func(method string) *http.Response {
		req, _ := http.NewRequest(method, h.URL+"/v2/library/limited/manifests/1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i, want := range []int{200, 200, 200, 200, 429} {
		method := http.MethodGet
		if i < 2 {
			method = http.MethodHead // HEADs do not spend the budget
		}
		resp := do(method)
		if resp.StatusCode != want {
			t.Errorf("request %d (%s): status %d, want %d", i, method, resp.StatusCode, want)
		}
		if resp.Header.Get("Ratelimit-Limit") != "2;w=21600" {
			t.Errorf("request %d: ratelimit-limit %q", i, resp.Header.Get("Ratelimit-Limit"))
		}
	}
	h.SetPullLimit(0)
	h.ExpireTokens()
	resp := do(http.MethodGet)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Www-Authenticate"), "error=") {
		t.Errorf("expired token: status %d, challenge %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
}
