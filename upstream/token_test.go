package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTokenLifetime(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn any
		issuedAt  string // "": absent; else a duration relative to the clock, or garbage
		access    bool
		validFor  time.Duration // the token is used until just before this
	}{
		{"expires_in absent means 60s", nil, "", false, 54 * time.Second},
		{"expires_in 0 means 60s", 0, "", false, 54 * time.Second},
		{"expires_in 300", 300, "", false, 270 * time.Second},
		{"expires_in 3600, margin capped at 30s", 3600, "", false, 3570 * time.Second},
		{"access_token", 300, "", true, 270 * time.Second},
		{"issued 100s ago", 300, "-100s", false, 170 * time.Second},
		{"issued in the future counts from now", 300, "1h", false, 270 * time.Second},
		{"unparsable issued_at counts from now", 300, "yesterday", false, 270 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			start := clk.Now()
			f := newFakeHub(t)
			f.set(func(f *fakeHub) {
				f.expiresIn, f.accessToken = tc.expiresIn, tc.access
				if tc.issuedAt != "" {
					f.issuedAt = func() string {
						d, err := time.ParseDuration(tc.issuedAt)
						if err != nil {
							return tc.issuedAt
						}
						return clk.Now().Add(d).Format(time.RFC3339)
					}
				}
			})
			c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}}, Options{Now: clk.Now})
			steps := []struct {
				advance  time.Duration
				wantHits int64
			}{
				{0, 1},
				{tc.validFor - time.Second, 1}, // still cached
				{time.Second, 2},               // expired: a new token
				{0, 2},                         // and that one is cached
			}
			for i, s := range steps {
				clk.Add(s.advance)
				if body, err := get(t, c, t.Context(), "manifests/a"); err != nil || body != manifestBody {
					t.Fatalf("step %d: %q, %v", i, body, err)
				}
				if n := f.realmHits.Load(); n != s.wantHits {
					t.Fatalf("step %d (at %v): realm hits %d, want %d", i, clk.Now().Sub(start), n, s.wantHits)
				}
			}
			if n := f.registryHits.Load(); n != 5 {
				t.Errorf("registry hits = %d, want 5 (one challenge, then one request each)", n)
			}
		})
	}
}

func TestTokenRefreshedOn401(t *testing.T) {
	f := newFakeHub(t)
	var ex exchanges
	c := mustNew(t, Config{Name: "fake", Endpoints: []string{f.registry.URL}}, Options{OnResponse: ex.add})
	if _, err := get(t, c, t.Context(), "manifests/a"); err != nil {
		t.Fatal(err)
	}
	ex.kinds()
	f.gen.Add(1) // the registry no longer accepts the cached token
	if body, err := get(t, c, t.Context(), "manifests/a"); err != nil || body != manifestBody {
		t.Fatalf("after the token was revoked: %q, %v", body, err)
	}
	want := []string{"registry 401", "token 200", "registry 200"}
	if got := ex.kinds(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("exchanges = %q, want %q", got, want)
	}
	if _, err := get(t, c, t.Context(), "manifests/a"); err != nil {
		t.Fatal(err)
	}
	if n := f.realmHits.Load(); n != 2 {
		t.Errorf("realm hits = %d, want 2 (the refreshed token is cached)", n)
	}
}

func TestStill401AfterNewToken(t *testing.T) {
	f := newFakeHub(t)
	var registryHits atomic.Int64
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		registryHits.Add(1)
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="fake"`, f.realm.URL))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer reg.Close()
	c := mustNew(t, Config{Name: "fake", Endpoints: []string{reg.URL}}, Options{})
	_, err := get(t, c, t.Context(), "manifests/a")
	var ue *Error
	if !errors.As(err, &ue) || ue.Status != http.StatusUnauthorized {
		t.Fatalf("got %v, want a 401 *Error", err)
	}
	if n := registryHits.Load(); n != 2 {
		t.Errorf("registry hits = %d, want 2 (one retry)", n)
	}
	if n := f.realmHits.Load(); n != 1 {
		t.Errorf("realm hits = %d, want 1", n)
	}
}

func TestBadTokenAnswers(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"no token", `{"expires_in":300}`},
		{"not JSON", `<html>`},
		{"empty", ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			realm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(tc.body))
			}))
			defer realm.Close()
			reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="s"`, realm.URL))
				w.WriteHeader(http.StatusUnauthorized)
			}))
			defer reg.Close()
			c := mustNew(t, Config{Name: "x", Endpoints: []string{reg.URL}}, Options{})
			_, err := get(t, c, t.Context(), "manifests/a")
			if err == nil || !strings.Contains(err.Error(), "token answer") {
				t.Errorf("got %v, want an error about the token answer", err)
			}
		})
	}
}

func TestTokenFetchShared(t *testing.T) {
	var tc tokenCache
	key := tokenKey{realm: "r", service: "s", scope: "repository:a:pull"}
	var fetches atomic.Int64
	release := make(chan struct{})
	fetch := func(context.Context) (string, time.Time, error) {
		fetches.Add(1)
		<-release
		return "shared", time.Now().Add(time.Hour), nil
	}
	const callers = 8
	var wg sync.WaitGroup
	tokens := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { tokens[i], errs[i] = tc.get(t.Context(), key, time.Now, false, fetch) })
	}
	for tc.waiting(key) < callers {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	for i := range callers {
		if tokens[i] != "shared" || errs[i] != nil {
			t.Errorf("caller %d: %q, %v", i, tokens[i], errs[i])
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1 shared by %d callers", n, callers)
	}
}

func TestTokenFetchOutlivesCancelledCaller(t *testing.T) {
	var tc tokenCache
	key := tokenKey{realm: "r"}
	release := make(chan struct{})
	var fetches atomic.Int64
	fetch := func(ctx context.Context) (string, time.Time, error) {
		fetches.Add(1)
		<-release
		return "tok", time.Now().Add(time.Hour), ctx.Err()
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := tc.get(ctx, key, time.Now, false, fetch)
		done <- err
	}()
	for tc.waiting(key) < 1 {
		runtime.Gosched()
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	// a second caller joins the fetch still in flight, which completes
	second := make(chan string)
	go func() {
		tok, _ := tc.get(t.Context(), key, time.Now, false, fetch)
		second <- tok
	}()
	for tc.waiting(key) < 2 {
		runtime.Gosched()
	}
	close(release)
	if tok := <-second; tok != "tok" {
		t.Errorf("second caller got %q, want tok", tok)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

func TestTokenCacheSweepsExpired(t *testing.T) {
	var tc tokenCache
	clk := newClock()
	for i := range minSweep - 1 {
		key := tokenKey{realm: "r", scope: fmt.Sprintf("repository:r%d:pull", i)}
		if _, err := tc.get(t.Context(), key, clk.Now, false, func(context.Context) (string, time.Time, error) {
			return "t", clk.Now().Add(time.Minute), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n := tc.len(); n != minSweep-1 {
		t.Fatalf("cached %d tokens, want %d", n, minSweep-1)
	}
	clk.Add(2 * time.Minute) // every token so far has expired
	if _, err := tc.get(t.Context(), tokenKey{realm: "fresh"}, clk.Now, false, func(context.Context) (string, time.Time, error) {
		return "t", clk.Now().Add(time.Minute), nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := tc.len(); n != 1 {
		t.Errorf("after the sweep %d tokens remain, want 1", n)
	}
}

func TestCredentialsID(t *testing.T) {
	tests := []struct {
		a, b credentials
		same bool
	}{
		{credentials{"alice", secret}, credentials{"alice", secret}, true},
		{credentials{"alice", secret}, credentials{"alice", "other"}, false},
		{credentials{"alice", secret}, credentials{"bob", secret}, false},
		{credentials{"ab", "c"}, credentials{"a", "bc"}, false},
	}
	for _, tc := range tests {
		ia, ib := tc.a.id(), tc.b.id()
		if (ia == ib) != tc.same || ia == "" || strings.Contains(ia, secret) {
			t.Errorf("id(%q) = %q, id(%q) = %q; same = %v", tc.a.username, ia, tc.b.username, ib, tc.same)
		}
	}
	if id := (credentials{}).id(); id != "" {
		t.Errorf("id of no credentials = %q, want empty", id)
	}
}

func BenchmarkTokenCacheHit(b *testing.B) {
	b.ReportAllocs()
	var tc tokenCache
	key := tokenKey{realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/alpine:pull"}
	fetch := func(context.Context) (string, time.Time, error) { return "t", time.Now().Add(time.Hour), nil }
	ctx := context.Background()
	if _, err := tc.get(ctx, key, time.Now, false, fetch); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if tok, err := tc.get(ctx, key, time.Now, false, fetch); err != nil || tok != "t" {
			b.Fatal(tok, err)
		}
	}
}
