package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regcache/regcache/oci"
)

// clientFrom returns an HTTP client whose connections come from the
// loopback address local (127.0.0.0/8 is all loopback): another client
// address as far as the mirror can tell.
func clientFrom(t *testing.T, local string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// TestNoGuessingDoor: 2,000 token requests with random Basic credentials
// from one client address cost the upstream at most a few dozen credential
// checks, the rest being answered 429 TOOMANYREQUESTS with a Retry-After,
// while a real user logging in from another address during the flood gets
// a token that pulls a private repository.
func TestNoGuessingDoor(t *testing.T) {
	h := privateHub(t)
	if _, _, err := h.PushImage("corp/secret", "1", 1, 4096, false); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, siteOptions{upstreams: fmt.Sprintf(`upstream docker.io {
			url %s
			trusted_realm localhost
		}`, h.URL)})
	h.Counters.Reset()
	attacker := clientFrom(t, "127.0.0.1")
	const guesses, workers = 2000, 16
	var next, refused, throttled, other atomic.Int64
	var badThrottle atomic.Value
	flood := func() {
		for next.Add(1) <= guesses {
			secret := make([]byte, 8)
			_, _ = rand.Read(secret)
			req, _ := http.NewRequest(http.MethodGet, m.URL+"/v2/_token?service=mirror", nil)
			req.SetBasicAuth("guess-"+hex.EncodeToString(secret[:4]), hex.EncodeToString(secret))
			resp, err := attacker.Do(req)
			if err != nil {
				other.Add(1)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				refused.Add(1)
			case http.StatusTooManyRequests:
				throttled.Add(1)
				var eb oci.ErrorBody
				if json.Unmarshal(body, &eb) != nil || len(eb.Errors) == 0 || eb.Errors[0].Code != oci.CodeTooManyRequests || resp.Header.Get("Retry-After") == "" {
					badThrottle.Store(fmt.Sprintf("%s Retry-After %q", body, resp.Header.Get("Retry-After")))
				}
			default:
				other.Add(1)
			}
		}
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(flood)
	}
	// The real user logs in from another address while the flood runs.
	for next.Load() < guesses/4 {
		time.Sleep(time.Millisecond)
	}
	user := clientFrom(t, "127.0.0.2")
	req, _ := http.NewRequest(http.MethodGet, m.URL+"/v2/_token?service=mirror&scope=repository:corp/secret:pull", nil)
	req.SetBasicAuth("alice", "alice-pw-91c2")
	resp, err := user.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || answer.Token == "" {
		t.Fatalf("the real user's login during the flood: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, m.URL+"/v2/corp/secret/manifests/1", nil)
	req.Header.Set("Authorization", "Bearer "+answer.Token)
	resp, err = user.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the real user's pull during the flood: %d", resp.StatusCode)
	}
	wg.Wait()

	checks := h.Counters.RealmAll.Load()
	t.Logf("%d guesses: %d refused, %d throttled, %d other; %d upstream token requests", guesses, refused.Load(), throttled.Load(), other.Load(), checks)
	if checks > 40 {
		t.Errorf("%d random credentials cost %d upstream token requests, want at most a few dozen", guesses, checks)
	}
	if refused.Load()+throttled.Load() != guesses || throttled.Load() < guesses*9/10 {
		t.Errorf("%d refused and %d throttled of %d guesses (%d other), want nearly all throttled", refused.Load(), throttled.Load(), guesses, other.Load())
	}
	if v := badThrottle.Load(); v != nil {
		t.Errorf("a throttled answer is not 429 TOOMANYREQUESTS with Retry-After: %s", v)
	}
}

// TestLoginLimitBehindTrustedProxy: behind a proxy Caddy trusts, each
// client is limited under the address the proxy reports, not the proxy's:
// one forwarded client spending its checks leaves another one's intact.
func TestLoginLimitBehindTrustedProxy(t *testing.T) {
	h := privateHub(t)
	dir := t.TempDir()
	port := freePort(t)
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s/caddy-data
	log {
		level ERROR
	}
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Forwarded-For
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	registry_cache {
		storage %s/cache
		login_limit {
			burst 3
			interval 1h
		}
		upstream docker.io {
			url %s
			trusted_realm localhost
		}
	}
}
`, dir, port, dir, h.URL))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	login := func(forwardedFor, user, password string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/v2/_token?service=mirror", nil)
		req.Header.Set("X-Forwarded-For", forwardedFor)
		req.SetBasicAuth(user, password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if got := login("192.0.2.1", "guess", fmt.Sprint(i)); got != http.StatusUnauthorized {
			t.Fatalf("guess %d of the first client: %d, want 401", i+1, got)
		}
	}
	if got := login("192.0.2.1", "guess", "3"); got != http.StatusTooManyRequests {
		t.Errorf("the first client's fourth guess: %d, want 429", got)
	}
	if got := login("192.0.2.2", "guess", "0"); got != http.StatusUnauthorized {
		t.Errorf("another forwarded client's first guess: %d, want 401 (its own bucket)", got)
	}
	if got := login("192.0.2.2", "alice", "alice-pw-91c2"); got != http.StatusOK {
		t.Errorf("a real login of another forwarded client: %d, want 200", got)
	}
}
