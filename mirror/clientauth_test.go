package mirror

import (
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/upstream"
)

// authMirror is a mirror of docker.io (the default) and ghcr.io with fake
// upstreams that are never asked (client authentication is local).
func authMirror(t *testing.T, cfg Config) (*Mirror, *testClock) {
	t.Helper()
	mt := newManifestTest(t, cfg, upstream.Options{})
	ghcr, err := upstream.New(upstream.Config{Name: "ghcr.io", Endpoints: []string{mt.reg.srv.URL}}, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mt.m.upstreams["ghcr.io"] = ghcr
	return mt.m, mt.clk
}

func TestClientOf(t *testing.T) {
	m, clk := authMirror(t, Config{})
	alice := clientCredentials{registry: DockerHub, username: "alice", password: "pw"}
	token := m.clientTokens.issue(alice, clk.Now())
	anonymous := m.clientTokens.issue(clientCredentials{}, clk.Now())
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:pw2"))
	tests := []struct {
		name      string
		auth      string
		site      bool // the site authenticated the request
		advance   time.Duration
		want      client
		wantError int
	}{
		{"no header", "", false, 0, client{}, 0},
		{"a token of alice", "Bearer " + token, false, 0, client{cred: alice, authenticated: true}, 0},
		{"an anonymous token", "Bearer " + anonymous, false, 0, client{authenticated: true}, 0},
		{"an unknown token", "Bearer 00ff", false, 0, client{}, http.StatusUnauthorized},
		{"an expired token", "Bearer " + token, false, clientTokenLifetime, client{}, http.StatusUnauthorized},
		// The fake upstream cannot tell (its API root answers 404): the
		// credentials are taken as given, for the default upstream.
		{"Basic credentials", basic, false, 0, client{cred: clientCredentials{registry: DockerHub, username: "bob", password: "pw2"}, authenticated: true}, 0},
		{"Basic credentials too long", "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:"+strings.Repeat("x", maxPasswordLen+1))), false, 0, client{}, http.StatusBadRequest},
		{"malformed Basic", "Basic !!!", false, 0, client{}, http.StatusBadRequest},
		{"another scheme", "Digest x", false, 0, client{}, http.StatusBadRequest},
		{"the site's own Basic credentials", basic, true, 0, client{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk.Add(tc.advance)
			defer clk.Add(-tc.advance)
			r := httptest.NewRequest(http.MethodGet, "/v2/library/x/manifests/1", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.site {
				r = r.WithContext(WithSiteAuthenticated(r.Context()))
			}
			got, err := m.clientOf(r)
			if tc.wantError != 0 {
				if oe := toOCI(err); err == nil || oe.Status != tc.wantError {
					t.Errorf("clientOf = %+v, %v; want an error with status %d", got, err, tc.wantError)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("clientOf = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestForClientBindsCredentialsToTheirRegistry(t *testing.T) {
	m, _ := authMirror(t, Config{})
	hub, ghcr := m.upstreams[DockerHub], m.upstreams["ghcr.io"]
	tests := []struct {
		name   string
		cred   clientCredentials
		target *upstream.Client
		own    bool // the request authenticates with the client's credentials
	}{
		{"token for docker.io, request to docker.io", clientCredentials{registry: DockerHub, username: "a", password: "p"}, hub, true},
		{"token for docker.io, request to ghcr.io", clientCredentials{registry: DockerHub, username: "a", password: "p"}, ghcr, false},
		{"credentials for ghcr.io, request to ghcr.io", clientCredentials{registry: "ghcr.io", username: "a", password: "p"}, ghcr, true},
		{"anonymous", clientCredentials{}, hub, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := target{upstream: tc.target, registry: CanonicalRegistry(tc.target.Name()), repo: "library/x"}
			tg = tg.forClient(client{cred: tc.cred, authenticated: true})
			if got := tg.cred.Own(); got != tc.own {
				t.Errorf("own credentials = %v, want %v", got, tc.own)
			}
			if tc.own == (tg.who.ID() == "") {
				t.Errorf("credential identity %q does not match own credentials %v", tg.who.ID(), tc.own)
			}
		})
	}
}

func TestCredentialRegistryAndRealm(t *testing.T) {
	m, _ := authMirror(t, Config{})
	tests := []struct {
		name, target string
		want         string
		wantRealm    string
		tls          bool
	}{
		{"no ns: the default upstream", "/v2/_token?scope=repository:ghcr.io/owner/app:pull", DockerHub, "http://mirror.test/v2/_token", false},
		{"ns parameter", "/v2/_token?ns=ghcr.io", "ghcr.io", "https://mirror.test/v2/_token?ns=ghcr.io", true},
		{"ns of a registry not mirrored", "/v2/_token?ns=evil.example", "", "http://mirror.test/v2/_token?ns=evil.example", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://mirror.test"+tc.target, nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if got := m.credentialRegistry(r); got != tc.want {
				t.Errorf("credentialRegistry = %q, want %q", got, tc.want)
			}
			if got := m.realm(r); got != tc.wantRealm {
				t.Errorf("realm = %q, want %q", got, tc.wantRealm)
			}
		})
	}
}

func TestClientTokensAreBounded(t *testing.T) {
	ts := newClientTokens()
	now := time.Now()
	if a, b := ts.issue(clientCredentials{}, now), ts.issue(clientCredentials{}, now); a != b {
		t.Error("two anonymous clients got different tokens: each would cost memory")
	}
	for i := range 3 * maxClientTokens {
		ts.issue(clientCredentials{registry: DockerHub, username: "u", password: strconv.Itoa(i)}, now)
		ts.setVerdict(clientCredentials{registry: DockerHub, username: "u", password: strconv.Itoa(i)}, i%2 == 0, now)
	}
	if n := len(ts.tokens); n > maxClientTokens {
		t.Errorf("%d tokens kept, want at most %d", n, maxClientTokens)
	}
	if n := len(ts.verdicts); n > maxClientTokens {
		t.Errorf("%d verdicts kept, want at most %d", n, maxClientTokens)
	}
	if _, ok := ts.lookup(ts.anonymous, now.Add(time.Hour)); !ok {
		t.Error("the anonymous token expired")
	}
}
