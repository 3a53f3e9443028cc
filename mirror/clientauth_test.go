package mirror

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
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
		{"Basic credentials", basic, false, 0, client{cred: clientCredentials{username: "bob", password: "pw2"}, authenticated: true}, 0},
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

func TestWithClientBindsCredentialsToTheirRegistry(t *testing.T) {
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
		{"Basic with the request, to ghcr.io", clientCredentials{username: "a", password: "p"}, ghcr, true},
		{"anonymous", clientCredentials{}, hub, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := target{upstream: tc.target, registry: CanonicalRegistry(tc.target.Name()), repo: "library/x"}
			ctx := withClient(context.Background(), client{cred: tc.cred, authenticated: true}, tg)
			if got := upstream.HasOwnCredentials(ctx); got != tc.own {
				t.Errorf("own credentials = %v, want %v", got, tc.own)
			}
			if tc.own == (tc.target.CredentialID(ctx) == "") {
				t.Errorf("credential identity %q does not match own credentials %v", tc.target.CredentialID(ctx), tc.own)
			}
		})
	}
}

func TestTokenUpstreamAndRealm(t *testing.T) {
	m, _ := authMirror(t, Config{})
	tests := []struct {
		name, target string
		scopes       []string
		want         string
		wantRealm    string
		tls          bool
	}{
		{"no hint: the default upstream", "/v2/_token", nil, DockerHub, "http://mirror.test/v2/_token", false},
		{"ns parameter", "/v2/_token?ns=ghcr.io", nil, "ghcr.io", "https://mirror.test/v2/_token?ns=ghcr.io", true},
		{"scope with a registry prefix", "/v2/_token", []string{"repository:ghcr.io/owner/app:pull"}, "ghcr.io", "http://mirror.test/v2/_token", false},
		{"scope without a prefix", "/v2/_token", []string{"repository:library/alpine:pull"}, DockerHub, "http://mirror.test/v2/_token", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://mirror.test"+tc.target, nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			u, err := m.tokenUpstream(r.URL.Query().Get("ns"), tc.scopes)
			if err != nil || u.Name() != tc.want {
				t.Errorf("tokenUpstream = %v, %v; want %s", u, err, tc.want)
			}
			if got := m.realm(r); got != tc.wantRealm {
				t.Errorf("realm = %q, want %q", got, tc.wantRealm)
			}
		})
	}
	if _, err := m.tokenUpstream("evil.example", nil); err == nil {
		t.Error("tokenUpstream accepted a registry that is not mirrored")
	}
}

func TestClientTokensAreBounded(t *testing.T) {
	var ts clientTokens
	now := time.Now()
	first := ts.issue(clientCredentials{username: "a"}, now)
	for range maxClientTokens {
		ts.issue(clientCredentials{}, now.Add(time.Second))
	}
	if n := len(ts.tokens); n > maxClientTokens {
		t.Errorf("%d tokens kept, want at most %d", n, maxClientTokens)
	}
	if _, ok := ts.lookup(first, now); ok {
		t.Error("the oldest token survived the sweep of a full store")
	}
}
