package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/ref"

	"github.com/regcache/regcache/integration/hubtest"
)

// privateHub starts a Docker-Hub-like upstream with a private repository
// corp/secret that alice may pull and bob may not, and a public
// library/open.
func privateHub(t *testing.T) *hubtest.Hub {
	t.Helper()
	h, err := hubtest.Start(hubtest.Options{
		Users:   map[string]string{"alice": "alice-pw-91c2", "bob": "bob-pw-5d7e"},
		Private: map[string][]string{"corp/secret": {"alice"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// pullAs pulls image through the mirror with go-containerregistry as a new
// client authenticating with auth, and returns its digest.
func pullAs(image string, auth authn.Authenticator) (string, error) {
	r, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		return "", err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	img, err := remote.Image(r, remote.WithAuth(auth), remote.WithTransport(tr))
	if err != nil {
		return "", err
	}
	if err := validate.Image(img); err != nil {
		return "", err
	}
	d, err := img.Digest()
	return d.String(), err
}

// firstLayer returns the digest of img's first layer.
func firstLayer(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("layers of the image: %d, %v", len(layers), err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// mirrorToken asks the mirror's token endpoint for a token, with Basic
// credentials unless user is empty, and returns the status and token.
func mirrorToken(t *testing.T, base, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v2/_token?service=mirror&scope=repository:corp/secret:pull", nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer.Token
}

// TestPrivateRepositoryStaysPrivate pulls a private repository through the
// mirror as the one user the upstream allows, then shows that its cached
// manifests and blobs are refused to an anonymous client, to a user the
// upstream refuses (with a token of the mirror or with Basic credentials),
// and through a public repository's name, all without any transfer from
// the upstream; that the allowed user's second pull costs no upstream
// request; and that the DEBUG logs hold no secret and the CDN never saw an
// Authorization header.
func TestPrivateRepositoryStaysPrivate(t *testing.T) {
	h := privateHub(t)
	img, want, err := h.PushImage("corp/secret", "1", 2, 64<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.PushImage("library/open", "1", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	layer := firstLayer(t, img)
	host, logs := debugLoggedMirror(t, fmt.Sprintf(`upstream docker.io {
			url %s
			trusted_realm localhost
		}`, h.URL))
	base := "http://" + host
	alice := &authn.Basic{Username: "alice", Password: "alice-pw-91c2"}
	bob := &authn.Basic{Username: "bob", Password: "bob-pw-5d7e"}

	// The allowed user pulls: the mirror uses her credentials upstream.
	if got, err := pullAs(host+"/corp/secret:1", alice); err != nil || got != want {
		t.Fatalf("alice's pull: %s, %v; want %s", got, err, want)
	}
	if h.Counters.CDNGET.Load() == 0 {
		t.Fatalf("alice's pull fetched no blob from the CDN: %s", h.Counters)
	}
	// regclient, with the same credentials, gets the same image.
	rc := regclient.New(regclient.WithConfigHost(config.Host{Name: host, TLS: config.TLSDisabled, User: "alice", Pass: "alice-pw-91c2"}))
	rr, err := ref.New(host + "/corp/secret:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if m, err := rc.ManifestHead(ctx, rr); err != nil || m.GetDescriptor().Digest.String() != want {
		t.Errorf("regclient as alice: %v, %v; want %s", m, err, want)
	}

	h.Counters.Reset()
	_, aliceToken := mirrorToken(t, base, "alice", "alice-pw-91c2")
	status, bobToken := mirrorToken(t, base, "bob", "bob-pw-5d7e")
	if status != http.StatusOK || bobToken == "" {
		t.Fatalf("bob's token: status %d; want 200 with a token (his credentials are valid upstream)", status)
	}
	if status, _ := mirrorToken(t, base, "bob", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("token with a wrong password: status %d, want 401", status)
	}
	bobBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:bob-pw-5d7e"))
	paths := []string{"/v2/corp/secret/manifests/1", "/v2/corp/secret/manifests/" + want, "/v2/corp/secret/blobs/" + layer.String()}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, p := range paths {
			for _, tc := range []struct {
				who, auth string
				status    int
			}{
				{"anonymous", "", http.StatusUnauthorized},
				{"bob's token", "Bearer " + bobToken, http.StatusForbidden},
				{"bob's Basic credentials", bobBasic, http.StatusForbidden},
			} {
				resp := rawRequest(t, method, base+p, tc.auth)
				if resp.status != tc.status {
					t.Errorf("%s %s as %s: %d %s; want %d", method, p, tc.who, resp.status, resp.body, tc.status)
				}
				if method == http.MethodGet && !strings.Contains(resp.body, `"errors"`) {
					t.Errorf("%s %s as %s: body %q is not an OCI error", method, p, tc.who, resp.body)
				}
				if tc.status == http.StatusUnauthorized {
					chs := strings.Join(resp.header.Values("Www-Authenticate"), "\n")
					if !strings.Contains(chs, `Bearer realm="`+base+`/v2/_token"`) || !strings.Contains(chs, "Basic realm=") {
						t.Errorf("%s %s as %s: challenges %q; want the mirror's Bearer realm and Basic", method, p, tc.who, chs)
					}
				}
			}
		}
	}
	// A public repository's name does not open the private blob.
	if resp := rawRequest(t, http.MethodGet, base+"/v2/library/open/blobs/"+layer.String(), ""); resp.status < 400 || resp.status >= 500 {
		t.Errorf("private blob through a public repository: %d %s; want a 4xx", resp.status, resp.body)
	}
	if resp := rawRequest(t, http.MethodGet, base+"/v2/_catalog", ""); strings.Contains(resp.body, "corp/secret") {
		t.Errorf("the catalog names the private repository: %s", resp.body)
	}
	if _, err := pullAs(host+"/corp/secret:1", authn.Anonymous); err == nil {
		t.Error("an anonymous client pulled the private image")
	}
	if _, err := pullAs(host+"/corp/secret:1", bob); err == nil {
		t.Error("bob pulled the private image")
	}
	wantCount(t, "refusals: blob GETs at the CDN", h.Counters.CDNGET.Load(), 0)
	wantCount(t, "refusals: manifest GETs upstream", h.Counters.ManifestGET.Load(), 0)

	// The allowed user's token still opens everything, from the cache.
	h.Counters.Reset()
	for _, p := range paths {
		if resp := rawRequest(t, http.MethodGet, base+p, "Bearer "+aliceToken); resp.status != http.StatusOK {
			t.Errorf("GET %s with alice's token: %d %s", p, resp.status, resp.body)
		}
	}
	if got, err := pullAs(host+"/corp/secret:1", alice); err != nil || got != want {
		t.Errorf("alice's second pull: %s, %v; want %s", got, err, want)
	}
	wantCount(t, "alice's warm pull: manifest and blob requests upstream",
		h.Counters.ManifestGET.Load()+h.Counters.ManifestHEAD.Load()+h.Counters.BlobGET.Load()+h.Counters.BlobHEAD.Load(), 0)
	wantCount(t, "Authorization headers seen by the CDN", h.Counters.CDNAuthRejected.Load(), 0)

	wantNoSecrets(t, logs(), `"access checked"`, "alice-pw-91c2", "bob-pw-5d7e", aliceToken, bobToken,
		bobBasic[len("Basic "):], base64.StdEncoding.EncodeToString([]byte("alice:alice-pw-91c2")))
}

// rawResponse is what rawRequest got.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawRequest sends one request with an optional Authorization header.
func rawRequest(t *testing.T, method, url, auth string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(body)}
}
