package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// provision provisions h in a fresh Caddy context and cleans it up when
// the test ends.
func provision(t *testing.T, h *Handler) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	t.Cleanup(cancel)
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
}

func TestProvisionDefaults(t *testing.T) {
	h := &Handler{Storage: filepath.Join(t.TempDir(), "cache")}
	provision(t, h)
	if h.MaxSize != DefaultMaxSize || h.Memory != DefaultMemory || h.TagTTL != caddy.Duration(DefaultTagTTL) ||
		h.NegativeTTL != caddy.Duration(DefaultNegativeTTL) || h.RateLimitReserve != 0 {
		t.Errorf("defaults not filled: max_size %d, memory %d, tag_ttl %v, negative_ttl %v, rate_limit_reserve %d",
			h.MaxSize, h.Memory, h.TagTTL, h.NegativeTTL, h.RateLimitReserve)
	}
}

func TestServeHTTPRoutesOnlyRegistryPaths(t *testing.T) {
	h := &Handler{Storage: filepath.Join(t.TempDir(), "cache")}
	provision(t, h)
	tests := []struct {
		path     string
		wantNext bool
		status   int
	}{
		// The API root points clients without a token at the token endpoint.
		{"/v2/", false, http.StatusUnauthorized},
		{"/v2", false, http.StatusUnauthorized},
		{"/v2/_token", false, http.StatusOK},
		{"/v2/library/x/blobs/uploads/", false, http.StatusMethodNotAllowed},
		{"/", true, http.StatusTeapot},
		{"/v2x", true, http.StatusTeapot},
		{"/metrics", true, http.StatusTeapot},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			calledNext := false
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				calledNext = true
				w.WriteHeader(http.StatusTeapot)
				return nil
			})
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil), next); err != nil {
				t.Fatalf("ServeHTTP(%s) = %v", tc.path, err)
			}
			if calledNext != tc.wantNext || w.Code != tc.status {
				t.Errorf("ServeHTTP(%s): next called %v, status %d; want %v, %d", tc.path, calledNext, w.Code, tc.wantNext, tc.status)
			}
		})
	}
}

func TestReloadReusesOpenCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	first := &Handler{Storage: dir}
	provision(t, first)
	second := &Handler{Storage: dir}
	provision(t, second)
	if first.store == nil || first.store != second.store {
		t.Errorf("the second handler opened another cache for the same directory")
	}
	if refs, ok := stores.References(dir); !ok || refs != 2 {
		t.Errorf("cache references = %d, %v; want 2", refs, ok)
	}
}

// TestReloadAppliesBudgetWhenServing: a handler of a reloaded config
// changes the shared cache's budget only once it serves, so a config that
// fails after provisioning leaves the live budget alone.
func TestReloadAppliesBudgetWhenServing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	live := &Handler{Storage: dir, MaxSize: 1 << 30}
	provision(t, live)
	next := &Handler{Storage: dir, MaxSize: 2 << 30}
	provision(t, next)
	if got := live.store.Stats().BudgetBytes; got != 1<<30 {
		t.Errorf("budget after the new config provisioned = %d, want the live %d", got, 1<<30)
	}
	noop := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	if err := next.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v2/", nil), noop); err != nil {
		t.Fatal(err)
	}
	if got := live.store.Stats().BudgetBytes; got != 2<<30 {
		t.Errorf("budget once the new config serves = %d, want %d", got, 2<<30)
	}
}

func TestFailedProvisionKeepsTheLiveCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	live := &Handler{Storage: dir}
	provision(t, live)
	tests := []struct {
		name string
		h    *Handler
	}{
		{"mirror refuses the config", &Handler{Storage: dir, Default: "nope.example", Upstreams: []Upstream{{Name: "docker.io"}}}},
		{"upstream refuses its URL", &Handler{Storage: dir, Upstreams: []Upstream{{Name: "a.io", URLs: []string{"https://u:p@a.io"}}}}},
		{"sync of a registry not mirrored", &Handler{Storage: dir, Upstreams: []Upstream{{Name: "docker.io"}}, Sync: []SyncRule{{Image: "ghcr.io/owner/app"}}}},
		{"sync of a bad name", &Handler{Storage: dir, Sync: []SyncRule{{Image: "docker.io/Alpine"}}}},
		{"sync rule refused", &Handler{Storage: dir, Sync: []SyncRule{{Image: "alpine", Every: caddy.Duration(time.Second)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
			defer cancel()
			if err := tc.h.Provision(ctx); err == nil {
				t.Fatal("Provision succeeded")
			}
			if err := tc.h.Cleanup(); err != nil { // as Caddy does after a failed Provision
				t.Fatal(err)
			}
			if refs, ok := stores.References(dir); !ok || refs != 1 {
				t.Errorf("cache references = %d, %v; want the live handler's 1", refs, ok)
			}
		})
	}
}

func TestKnownEndpointsOnly(t *testing.T) {
	tests := []struct {
		name      string
		upstream  string
		endpoints []string
		want      bool
	}{
		{"Docker Hub's own endpoint", "docker.io", []string{"https://registry-1.docker.io"}, true},
		{"with a trailing slash", "ghcr.io", []string{"https://ghcr.io/"}, true},
		{"a relay before Docker Hub", "docker.io", []string{"https://relay.office.lan", "https://registry-1.docker.io"}, false},
		{"a private registry", "registry.example.com", []string{"https://registry.example.com"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := knownEndpointsOnly(tc.upstream, tc.endpoints); got != tc.want {
				t.Errorf("knownEndpointsOnly(%q, %q) = %v, want %v", tc.upstream, tc.endpoints, got, tc.want)
			}
		})
	}
}
