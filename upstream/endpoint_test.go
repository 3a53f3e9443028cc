package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// countingTransport counts the requests it sends (or fails to send) per
// host, so that a dead endpoint's dial attempts are counted too.
type countingTransport struct {
	mu     sync.Mutex
	byHost map[string]int
}

func newCountingTransport() *countingTransport {
	return &countingTransport{byHost: map[string]int{}}
}

func (ct *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ct.mu.Lock()
	ct.byHost[r.URL.Host]++
	ct.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (ct *countingTransport) count(host string) int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.byHost[host]
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// fakeEndpoint starts an endpoint of the given kind: "ok" answers 200,
// "dead" refuses connections, and a status ("503", "429", "404") answers
// that status. It returns the base URL.
func fakeEndpoint(t *testing.T, kind string) string {
	t.Helper()
	if kind == "dead" || kind == "dead2" {
		return "http://" + deadAddr(t)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch kind {
		case "ok":
			_, _ = io.WriteString(w, "ok")
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "429":
			w.Header().Set("Retry-After", "60")
			w.WriteHeader(http.StatusTooManyRequests)
		case "404":
			w.WriteHeader(http.StatusNotFound)
		default:
			t.Errorf("unknown endpoint kind %q", kind)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestFailover(t *testing.T) {
	const requests = 3
	tests := []struct {
		name       string
		endpoints  []string
		wantStatus int // 0: success; -1: ErrUnavailable; else an *Error status
		wantHits   []int
	}{
		{"refused, then ok", []string{"dead", "ok"}, 0, []int{1, 3}},
		{"503, then ok", []string{"503", "ok"}, 0, []int{1, 3}},
		{"429, then ok", []string{"429", "ok"}, 0, []int{1, 3}},
		{"404 is final", []string{"404", "ok"}, 404, []int{3, 0}},
		{"first ok, second never used", []string{"ok", "dead"}, 0, []int{3, 0}},
		{"every endpoint in cooldown: all tried anyway", []string{"503", "dead"}, 503, []int{3, 3}},
		{"nothing reachable", []string{"dead", "dead2"}, -1, []int{3, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := newCountingTransport()
			var urls []string
			for _, kind := range tc.endpoints {
				urls = append(urls, fakeEndpoint(t, kind))
			}
			clk := newClock()
			c := mustNew(t, Config{Name: "x", Endpoints: urls}, Options{Transport: ct, Now: clk.Now, FailureCooldown: time.Minute})
			for i := range requests {
				body, err := get(t, c, t.Context(), "manifests/a")
				var ue *Error
				switch {
				case tc.wantStatus == 0 && (err != nil || body != "ok"):
					t.Fatalf("request %d: %q, %v; want ok", i, body, err)
				case tc.wantStatus == -1 && (!errors.Is(err, ErrUnavailable) || errors.As(err, &ue)):
					t.Fatalf("request %d: %v; want ErrUnavailable", i, err)
				case tc.wantStatus > 0 && (!errors.As(err, &ue) || ue.Status != tc.wantStatus):
					t.Fatalf("request %d: %v; want a %d *Error", i, err, tc.wantStatus)
				}
			}
			for i, want := range tc.wantHits {
				u, _ := url.Parse(urls[i])
				if got := ct.count(u.Host); got != want {
					t.Errorf("endpoint %d (%s) tried %d times, want %d", i, tc.endpoints[i], got, want)
				}
			}
		})
	}
}

func TestFailureCooldown(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "flaky")
	}))
	defer flaky.Close()
	good := fakeEndpoint(t, "ok")
	ct := newCountingTransport()
	clk := newClock()
	core, logs := observer.New(zapcore.WarnLevel)
	c := mustNew(t, Config{Name: "x", Endpoints: []string{flaky.URL, good}},
		Options{Transport: ct, Now: clk.Now, FailureCooldown: time.Minute, Logger: zap.New(core)})
	flakyHost := flaky.Listener.Addr().String()

	if body, err := get(t, c, t.Context(), "manifests/a"); err != nil || body != "ok" {
		t.Fatalf("first request: %q, %v", body, err)
	}
	h := c.Health()
	if h[0].Healthy || h[0].LastError == "" || !h[0].FailedUntil.Equal(clk.Now().Add(time.Minute)) || !h[1].Healthy || h[1].LastSuccess.IsZero() {
		t.Errorf("Health() after a failure = %+v", h)
	}
	entries := logs.FilterMessage("upstream endpoint failed").All()
	if len(entries) != 1 {
		t.Fatalf("%d warnings, want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	if fields["upstream"] != "x" || fields["endpoint"] != flaky.URL || fields["error"] == nil || entries[0].Level != zapcore.WarnLevel {
		t.Errorf("warning = %s %v, want upstream, endpoint and error", entries[0].Level, fields)
	}

	clk.Add(59 * time.Second)
	if _, err := get(t, c, t.Context(), "manifests/a"); err != nil {
		t.Fatal(err)
	}
	if n := ct.count(flakyHost); n != 1 {
		t.Errorf("within the cooldown the failed endpoint was tried %d times, want 1", n)
	}

	failing.Store(false)
	clk.Add(time.Second)
	if body, err := get(t, c, t.Context(), "manifests/a"); err != nil || body != "flaky" {
		t.Fatalf("after the cooldown: %q, %v; want the first endpoint again", body, err)
	}
	h = c.Health()
	if !h[0].Healthy || h[0].LastError != "" || !h[0].LastSuccess.Equal(clk.Now()) {
		t.Errorf("Health() after a success = %+v, want the failure cleared", h[0])
	}
}

func TestRealmTrusted(t *testing.T) {
	tests := []struct {
		endpoint string
		realm    string
		trusted  []string
		want     bool
	}{
		{"https://registry-1.docker.io", "https://auth.docker.io/token", nil, true},
		{"https://registry-1.docker.io", "https://AUTH.docker.io/token", nil, true},
		{"https://registry-1.docker.io", "http://auth.docker.io/token", nil, false}, // downgrade to http
		{"https://registry-1.docker.io", "https://evil.example/token", nil, false},
		{"https://registry-1.docker.io", "https://docker.io.evil.example/token", nil, false},
		{"https://ghcr.io", "https://ghcr.io/token", nil, true},
		{"https://registry.example.co.uk", "https://auth.example.co.uk/token", nil, true},
		{"https://registry.example.co.uk", "https://other.co.uk/token", nil, false},
		{"https://a.github.io", "https://b.github.io/token", nil, false}, // public suffix
		{"https://quay.io", "https://auth.example.com/token", []string{"auth.example.com"}, true},
		{"https://quay.io", "https://AUTH.example.com/token", []string{"auth.EXAMPLE.com"}, true},
		{"https://quay.io", "https://auth.example.com/token", []string{"example.com"}, false},
		{"http://127.0.0.1:5000", "http://127.0.0.1:5001/token", nil, true},
		{"http://127.0.0.1:5000", "http://localhost:5001/token", nil, false},
		{"http://127.0.0.1:5000", "http://127.0.0.2:5000/token", nil, false},
		{"http://localhost:5000", "http://localhost:9/token", nil, true},
		{"http://localhost:5000", "http://127.0.0.1:9/token", nil, false},
		{"https://registry.example.com", "https://10.0.0.1/token", nil, false},
		{"http://[::1]:5000", "http://[::1]:5001/token", nil, true},
		{"https://registry.example.com", "", nil, false},
		{"https://registry.example.com", "/token", nil, false},
		{"https://registry.example.com", "ftp://registry.example.com/token", nil, false},
	}
	for _, tc := range tests {
		c := mustNew(t, Config{Name: "x", Endpoints: []string{tc.endpoint}, TrustedRealmHosts: tc.trusted}, Options{})
		if got := c.realmTrusted(c.endpoints[0], tc.realm); got != tc.want {
			t.Errorf("realmTrusted(%s, %q, trusted %q) = %v, want %v", tc.endpoint, tc.realm, tc.trusted, got, tc.want)
		}
	}
}

func TestEndpointURL(t *testing.T) {
	tests := []struct {
		base   string
		ns     string // Config.Namespace
		origin string // Config.Origin
		req    Request
		want   string
	}{
		{"https://registry-1.docker.io", "", "", Request{}, "https://registry-1.docker.io/v2/"},
		{"https://registry-1.docker.io", "", "", Request{Repository: "library/alpine", Path: "manifests/latest"},
			"https://registry-1.docker.io/v2/library/alpine/manifests/latest"},
		{"https://h", "", "", Request{Repository: "a", Path: "blobs/sha256:0123abcd"}, "https://h/v2/a/blobs/sha256:0123abcd"},
		{"https://mirror.example/ghcr.io/", "", "", Request{Repository: "o/app", Path: "tags/list", Query: url.Values{"n": {"10"}, "last": {"v1"}}},
			"https://mirror.example/ghcr.io/v2/o/app/tags/list?last=v1&n=10"},
		{"http://127.0.0.1:5000", "", "", Request{Repository: "a", Path: "referrers/sha256:ff", Query: url.Values{"artifactType": {"application/vnd.example+json"}}},
			"http://127.0.0.1:5000/v2/a/referrers/sha256:ff?artifactType=application%2Fvnd.example%2Bjson"},
		// The registry itself gets no ns parameter, whatever the case of its host.
		{"https://Registry-1.Docker.io", "docker.io", "registry-1.docker.io", Request{Repository: "library/a", Path: "manifests/1"},
			"https://Registry-1.Docker.io/v2/library/a/manifests/1"},
		// A mirror of it does, beside the request's own query.
		{"http://parent.example:5000", "ghcr.io", "ghcr.io", Request{Repository: "o/app", Path: "tags/list", Query: url.Values{"n": {"2"}}},
			"http://parent.example:5000/v2/o/app/tags/list?n=2&ns=ghcr.io"},
		{"http://parent.example:5000", "ghcr.io", "ghcr.io", Request{}, "http://parent.example:5000/v2/?ns=ghcr.io"},
		// The port is part of the origin.
		{"https://reg.example:5000", "reg.example", "reg.example", Request{Repository: "a", Path: "manifests/1"},
			"https://reg.example:5000/v2/a/manifests/1?ns=reg.example"},
	}
	for _, tc := range tests {
		c := mustNew(t, Config{Name: "x", Endpoints: []string{tc.base}, Namespace: tc.ns, Origin: tc.origin}, Options{})
		if got := c.endpoints[0].url(tc.req).String(); got != tc.want {
			t.Errorf("url(%s, %+v) = %s, want %s", tc.base, tc.req, got, tc.want)
		}
	}
}

func TestSkipLoggedOncePerCooldown(t *testing.T) {
	failing := fakeEndpoint(t, "503")
	good := fakeEndpoint(t, "ok")
	clk := newClock()
	core, logs := observer.New(zapcore.WarnLevel)
	c := mustNew(t, Config{Name: "x", Endpoints: []string{failing, good}},
		Options{Now: clk.Now, FailureCooldown: time.Minute, Logger: zap.New(core)})
	steps := []struct {
		advance       time.Duration
		wantFailures  int
		wantSkips     int
		wantSkipUntil time.Duration // end of the logged cooldown, from the start
	}{
		{0, 1, 0, 0},                                   // the first endpoint fails
		{10 * time.Second, 1, 1, time.Minute},          // skipped: logged once
		{10 * time.Second, 1, 1, time.Minute},          // skipped again: not logged
		{40 * time.Second, 2, 1, time.Minute},          // cooldown over: tried, fails again
		{time.Second, 2, 2, time.Minute + time.Minute}, // new cooldown: its first skip is logged
	}
	start := clk.Now()
	for i, s := range steps {
		clk.Add(s.advance)
		if body, err := get(t, c, t.Context(), "manifests/a"); err != nil || body != "ok" {
			t.Fatalf("step %d: %q, %v", i, body, err)
		}
		failures := logs.FilterMessage("upstream endpoint failed").Len()
		skips := logs.FilterMessage("skipping upstream endpoint in cooldown").All()
		if failures != s.wantFailures || len(skips) != s.wantSkips {
			t.Fatalf("step %d: %d failure and %d skip warnings, want %d and %d", i, failures, len(skips), s.wantFailures, s.wantSkips)
		}
		if len(skips) == 0 {
			continue
		}
		last := skips[len(skips)-1]
		f := last.ContextMap()
		if last.Level != zapcore.WarnLevel || f["upstream"] != "x" || f["endpoint"] != failing || f["error"] == "" ||
			!f["until"].(time.Time).Equal(start.Add(s.wantSkipUntil)) {
			t.Errorf("step %d: skip warning %s %v, want upstream, endpoint, error and the cooldown's end %v", i, last.Level, f, start.Add(s.wantSkipUntil))
		}
	}
}

func TestStalledBodyMovesToTheNextEndpoint(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stalling := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "ok")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(stalling.Close)
	good := fakeEndpoint(t, "ok")
	ct := newCountingTransport()
	clk := newClock()
	c := mustNew(t, Config{Name: "x", Endpoints: []string{stalling.URL, good}},
		Options{Transport: ct, Now: clk.Now, FailureCooldown: time.Minute, StallTimeout: 500 * time.Millisecond})
	if _, err := get(t, c, t.Context(), "blobs/a"); !errors.Is(err, ErrStalled) {
		t.Fatalf("a stalling body: %v, want ErrStalled", err)
	}
	// The request that continues it goes to the next endpoint.
	if body, err := get(t, c, t.Context(), "blobs/a"); err != nil || body != "ok" {
		t.Fatalf("after the stall: %q, %v", body, err)
	}
	u, _ := url.Parse(stalling.URL)
	g, _ := url.Parse(good)
	if ct.count(u.Host) != 1 || ct.count(g.Host) != 1 {
		t.Errorf("requests: stalling endpoint %d, good one %d; want 1 and 1", ct.count(u.Host), ct.count(g.Host))
	}
}

func TestDemoteSlowEndpoint(t *testing.T) {
	tests := []struct {
		name      string
		endpoints int
		// secondDown puts the second endpoint in its cooldown first.
		secondDown  bool
		wantDemoted bool
		wantNext    int // the endpoint the next request goes to
	}{
		{"another endpoint: the next request goes there", 2, false, true, 1},
		{"the only endpoint stays", 1, false, false, 0},
		{"the other one in cooldown: the slow one stays", 2, true, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := newCountingTransport()
			var hosts, urls []string
			for range tc.endpoints {
				urls = append(urls, fakeEndpoint(t, "ok"))
				u, _ := url.Parse(urls[len(urls)-1])
				hosts = append(hosts, u.Host)
			}
			clk := newClock()
			c := mustNew(t, Config{Name: "x", Endpoints: urls}, Options{Transport: ct, Now: clk.Now, FailureCooldown: time.Minute})
			if tc.secondDown {
				c.endpoints[1].failed(clk.Now(), time.Minute, errors.New("down"))
			}
			resp, err := c.Do(t.Context(), Request{Method: http.MethodGet, Repository: "r", Path: "blobs/a"})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Demote(resp, "1 byte/s"); got != tc.wantDemoted {
				t.Errorf("Demote: %v, want %v", got, tc.wantDemoted)
			}
			_ = resp.Body.Close()
			h := c.Health()[0]
			if h.Healthy == tc.wantDemoted || tc.wantDemoted && !strings.Contains(h.LastError, ErrSlow.Error()) {
				t.Errorf("the first endpoint after Demote: %+v", h)
			}
			before := ct.count(hosts[tc.wantNext])
			if body, err := get(t, c, t.Context(), "blobs/a"); err != nil || body != "ok" {
				t.Fatalf("after Demote: %q, %v", body, err)
			}
			if got := ct.count(hosts[tc.wantNext]) - before; got != 1 {
				t.Errorf("endpoint %d got %d of the next request, want it", tc.wantNext, got)
			}
		})
	}
}
