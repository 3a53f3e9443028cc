package mirror

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/records"
	"github.com/regcache/regcache/upstream"
)

// newTestMirror returns a Mirror over a temporary cache with upstream
// clients for the given registry names (pointing at an unused address:
// routing never connects).
func newTestMirror(t testing.TB, defaultName string, names ...string) *Mirror {
	t.Helper()
	store, rec := openCache(t, cache.Options{Dir: t.TempDir()})
	var clients []*upstream.Client
	for _, n := range names {
		c, err := upstream.New(upstream.Config{Name: n, Endpoints: []string{"http://127.0.0.1:1"}}, upstream.Options{})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	m, err := New(Config{Upstreams: clients, Default: defaultName, Store: store, Records: rec})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResolve(t *testing.T) {
	m := newTestMirror(t, "", "docker.io", "ghcr.io", "registry.local:5000")
	tests := []struct {
		name, url, repoName string
		registry, repo      string
		code                oci.Code
	}{
		{"default docker hub gets library/", "/v2/alpine/manifests/3", "alpine", "docker.io", "library/alpine", ""},
		{"default nested", "/v2/org/team/app/manifests/1", "org/team/app", "docker.io", "org/team/app", ""},
		{"ns parameter", "/v2/owner/app/manifests/1?ns=ghcr.io", "owner/app", "ghcr.io", "owner/app", ""},
		{"ns alias", "/v2/busybox/manifests/1?ns=registry-1.docker.io", "busybox", "docker.io", "library/busybox", ""},
		{"ns index alias", "/v2/busybox/manifests/1?ns=index.docker.io", "busybox", "docker.io", "library/busybox", ""},
		{"ns with matching prefix", "/v2/ghcr.io/owner/app/manifests/1?ns=ghcr.io", "ghcr.io/owner/app", "ghcr.io", "owner/app", ""},
		{"path prefix", "/v2/ghcr.io/owner/app/manifests/1", "ghcr.io/owner/app", "ghcr.io", "owner/app", ""},
		{"path prefix docker hub", "/v2/docker.io/nginx/manifests/1", "docker.io/nginx", "docker.io", "library/nginx", ""},
		{"path prefix with port", "/v2/registry.local:5000/x/manifests/1", "registry.local:5000/x", "registry.local:5000", "x", ""},
		{"library only on docker hub", "/v2/ghcr.io/app/manifests/1", "ghcr.io/app", "ghcr.io", "app", ""},
		{"unconfigured ns", "/v2/x/manifests/1?ns=quay.io", "x", "", "", oci.CodeNameUnknown},
		{"unconfigured prefix", "/v2/quay.io/x/manifests/1", "quay.io/x", "", "", oci.CodeNameUnknown},
		{"localhost prefix unconfigured", "/v2/localhost/x/manifests/1", "localhost/x", "", "", oci.CodeNameUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.resolve(httptest.NewRequest("GET", tc.url, nil), tc.repoName)
			if tc.code != "" {
				oe := toOCI(err)
				if err == nil || oe.Code() != tc.code {
					t.Fatalf("resolve(%s) = %+v, %v; want code %s", tc.url, got, err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%s): %v", tc.url, err)
			}
			if got.registry != tc.registry || got.repo != tc.repo || got.clientName != tc.repoName {
				t.Errorf("resolve(%s) = %s %s (client %s), want %s %s", tc.url, got.registry, got.repo, got.clientName, tc.registry, tc.repo)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	if m := newTestMirror(t, "", "ghcr.io", "docker.io"); m.defaultName != "docker.io" {
		t.Errorf("default = %s, want docker.io when configured", m.defaultName)
	}
	if m := newTestMirror(t, "", "ghcr.io", "quay.io"); m.defaultName != "ghcr.io" {
		t.Errorf("default = %s, want the first upstream", m.defaultName)
	}
	if m := newTestMirror(t, "quay.io", "ghcr.io", "quay.io"); m.defaultName != "quay.io" {
		t.Errorf("default = %s, want the configured one", m.defaultName)
	}
}

// openCache opens a content store with opts and its records, closed at
// the test's end.
func openCache(t testing.TB, opts cache.Options) (*cache.Store, *records.Store) {
	t.Helper()
	rec := records.New()
	opts.Dependent = rec
	store, err := cache.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store, rec
}

// testStore returns the cache store the test mirror m was built on.
func testStore(t *testing.T, m *Mirror) *cache.Store {
	t.Helper()
	s, ok := m.store.(*cache.Store)
	if !ok {
		t.Fatalf("the mirror's store is a %T, not a *cache.Store", m.store)
	}
	return s
}

// TestTargetsCarryTheDefaultIdentity checks that a target resolved from a
// request and one made for a warm or sync run both carry the upstream's
// default identity (its configured credentials), so their decisions and
// grants are recorded for that identity, not for anonymous.
func TestTargetsCarryTheDefaultIdentity(t *testing.T) {
	store, rec := openCache(t, cache.Options{Dir: t.TempDir()})
	tests := []struct{ name, user, password string }{
		{"anonymous", "", ""},
		{"configured credentials", "robot", "s3cret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := upstream.New(upstream.Config{Name: "docker.io", Endpoints: []string{"http://127.0.0.1:1"},
				Username: tc.user, Password: tc.password}, upstream.Options{})
			if err != nil {
				t.Fatal(err)
			}
			m, err := New(Config{Upstreams: []*upstream.Client{u}, Default: "docker.io", Store: store, Records: rec})
			if err != nil {
				t.Fatal(err)
			}
			want := u.DefaultCredentialID()
			if (want == "") != (tc.user == "") {
				t.Fatalf("DefaultCredentialID = %q for user %q", want, tc.user)
			}
			fromRequest, err := m.resolve(httptest.NewRequest(http.MethodGet, "/v2/library/x/manifests/1", nil), "library/x")
			if err != nil {
				t.Fatal(err)
			}
			fromRef, err := m.refTarget(ImageRef{Registry: "docker.io", Repository: "library/x"})
			if err != nil {
				t.Fatal(err)
			}
			for name, tg := range map[string]target{"request": fromRequest, "warm": fromRef} {
				if tg.who.ID() != want || !tg.who.IsDefault() {
					t.Errorf("%s target: identity %q (default %v), want the default %q", name, tg.who.ID(), tg.who.IsDefault(), want)
				}
			}
		})
	}
}
