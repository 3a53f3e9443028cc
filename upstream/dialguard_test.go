package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/regcache/regcache/episode"
)

func TestClassOf(t *testing.T) {
	for addr, want := range map[string]AddrClass{
		"8.8.8.8": ClassPublic, "2001:db8::1": ClassPublic, "172.32.0.1": ClassPublic, "100.128.0.1": ClassPublic,
		"127.0.0.1": ClassLoopback, "127.9.9.9": ClassLoopback, "::1": ClassLoopback, "::ffff:127.0.0.1": ClassLoopback,
		"169.254.169.254": ClassLinkLocal, "fe80::1": ClassLinkLocal, "::ffff:169.254.169.254": ClassLinkLocal,
		"10.1.2.3": ClassPrivate, "172.16.0.1": ClassPrivate, "172.31.255.255": ClassPrivate, "192.168.1.1": ClassPrivate,
		"100.100.100.200": ClassPrivate, "fd00::1": ClassPrivate, "fc00::1": ClassPrivate,
		"0.0.0.0": ClassUnspecified, "0.1.2.3": ClassUnspecified, "::": ClassUnspecified,
		// NAT64 (RFC 6052) and 6to4 (RFC 3056) addresses are classed by the
		// IPv4 address they carry.
		"64:ff9b::7f00:1": ClassLoopback, "64:ff9b::a9fe:a9fe": ClassLinkLocal, "64:ff9b::a00:5": ClassPrivate,
		"64:ff9b::c0a8:101": ClassPrivate, "64:ff9b::": ClassUnspecified, "64:ff9b::808:808": ClassPublic,
		"2002:7f00:1::1": ClassLoopback, "2002:a9fe:a9fe::": ClassLinkLocal, "2002:ac10:1:5::9": ClassPrivate,
		"2002:6440:1::1": ClassPrivate, "2002::1": ClassUnspecified, "2002:808:808::1": ClassPublic,
		// The local-use NAT64 prefix (RFC 8215) is private: where it
		// carries the IPv4 address depends on the site's prefix length.
		"64:ff9b:1::7f00:1": ClassPrivate, "64:ff9b:1:a9fe:a9:fe00::": ClassPrivate,
	} {
		if got := ClassOf(netip.MustParseAddr(addr)); got != want {
			t.Errorf("ClassOf(%s) = %s, want %s", addr, got, want)
		}
	}
}

func TestDialAllowed(t *testing.T) {
	loopback, private, linkLocal := []AddrClass{ClassLoopback}, []AddrClass{ClassPrivate}, []AddrClass{ClassLinkLocal}
	extra := []netip.Prefix{netip.MustParsePrefix("169.254.170.0/24")}
	tests := []struct {
		name      string
		endpoints []AddrClass
		allowed   []netip.Prefix
		dialed    string
		want      bool
	}{
		{"public from a public endpoint", nil, nil, "93.184.216.34", true},
		{"public from a loopback endpoint", loopback, nil, "93.184.216.34", true},
		{"loopback from a public endpoint", nil, nil, "127.0.0.1", false},
		{"mapped loopback from a public endpoint", nil, nil, "::ffff:127.0.0.1", false},
		{"metadata from a public endpoint", nil, nil, "169.254.169.254", false},
		{"IPv6 link-local from a public endpoint", nil, nil, "fe80::1", false},
		{"private from a public endpoint", nil, nil, "10.0.0.5", false},
		{"unique local from a public endpoint", nil, nil, "fd12::5", false},
		{"unspecified from a public endpoint", nil, nil, "0.0.0.0", false},
		{"IPv6 unspecified from a public endpoint", nil, nil, "::", false},
		{"loopback from a loopback endpoint", loopback, nil, "127.0.0.1", true},
		{"metadata from a loopback endpoint", loopback, nil, "169.254.169.254", false},
		{"loopback from a private endpoint", private, nil, "127.0.0.1", false},
		{"metadata from a private endpoint", private, nil, "169.254.169.254", false},
		{"private from a private endpoint", private, nil, "192.168.7.7", true},
		{"link-local from a link-local endpoint", linkLocal, nil, "169.254.169.254", true},
		{"an allowed network", nil, extra, "169.254.170.2", true},
		{"next to an allowed network", nil, extra, "169.254.169.254", false},
		{"metadata through NAT64 from a public endpoint", nil, nil, "64:ff9b::a9fe:a9fe", false},
		{"loopback through 6to4 from a public endpoint", nil, nil, "2002:7f00:1::1", false},
		{"loopback through NAT64 from a loopback endpoint", loopback, nil, "64:ff9b::7f00:1", true},
		{"an allowed network through NAT64", nil, extra, "64:ff9b::a9fe:aa02", true},
		{"an allowed network through 6to4", nil, extra, "2002:a9fe:aa02::1", true},
	}
	for _, tc := range tests {
		if got := DialAllowed(tc.endpoints, tc.allowed, netip.MustParseAddr(tc.dialed)); got != tc.want {
			t.Errorf("%s: DialAllowed(%v, %v, %s) = %v, want %v", tc.name, tc.endpoints, tc.allowed, tc.dialed, got, tc.want)
		}
	}
}

// TestDialGuardOnLoopback: the endpoint, named as localhost, is on
// loopback, so its redirects to loopback are followed. A guard whose
// endpoint is on a private network (never dialed here) refuses a
// connection to loopback at dial time, before connecting, and makes its
// endpoint's connections.
func TestDialGuardOnLoopback(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "inside") }))
	defer target.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/x", http.StatusTemporaryRedirect)
	}))
	defer front.Close()
	local := strings.Replace(front.URL, "127.0.0.1", "localhost", 1)
	c := mustNew(t, Config{Name: "x", Endpoints: []string{local}}, Options{})
	resp, err := c.Do(t.Context(), Request{Method: http.MethodGet, Repository: "a", Path: "blobs/sha256:aa"})
	if err != nil {
		t.Fatalf("a loopback endpoint's redirect to loopback: %v", err)
	}
	resp.Body.Close()

	u, _ := url.Parse("http://10.255.255.1:5000")
	g := newDialGuard("x", []*endpoint{{base: u}}, nil, nil, false, nil, episode.Options{})
	dial := g.dialContext(&net.Dialer{})
	conn, err := dial(t.Context(), "tcp", target.Listener.Addr().String())
	if err == nil {
		conn.Close()
	}
	if !errors.Is(err, ErrInternalAddress) || g.refusals.Load() != 1 {
		t.Fatalf("a private endpoint's redirect to loopback: %v, %d refusals; want ErrInternalAddress", err, g.refusals.Load())
	}
	if err := g.check("10.255.255.1:5000", netip.MustParseAddr("10.255.255.1")); err != nil {
		t.Errorf("the endpoint's own address: %v", err)
	}
	if err := g.check("registry.lan:443", netip.MustParseAddr("192.168.1.1")); err != nil {
		t.Errorf("another private address of a private endpoint: %v", err)
	}
	if err := g.check("metadata:80", netip.MustParseAddr("169.254.169.254")); !errors.Is(err, ErrInternalAddress) {
		t.Errorf("the metadata address from a private endpoint: %v", err)
	}
}

// fakeDNS answers lookups from a table and counts them; a name not in it
// is not found.
type fakeDNS struct {
	answers map[string][]string
	calls   atomic.Int64
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.calls.Add(1)
	var out []netip.Addr
	for _, a := range f.answers[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// guardOf builds the guard of endpoint URLs.
func guardOf(t *testing.T, urls []string, allowed []netip.Prefix, dns *fakeDNS) *dialGuard {
	t.Helper()
	var eps []*endpoint
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, &endpoint{base: u})
	}
	g := newDialGuard("x", eps, allowed, dns.lookup, false, nil, episode.Options{})
	<-g.resolved // the names resolve in the background
	return g
}

// TestDialGuardClassesFromConfig: the classes of internal networks that
// redirects and realms may lead to come from the configuration only: the
// endpoints' literal addresses, localhost, and their names as resolved
// once, in the background, when the guard is built. Connections to an endpoint's own host go
// through wherever it resolves at dial time, and teach the guard nothing:
// a hostile DNS answer of 127.0.0.1 for the endpoint's name must not open
// the Caddy admin (127.0.0.1:2019) to its redirects.
func TestDialGuardClassesFromConfig(t *testing.T) {
	dns := &fakeDNS{answers: map[string][]string{
		"registry.test": {"203.0.113.7"},
		"lan.test":      {"203.0.113.8", "10.1.2.3"},
		"hosts.test":    {"127.0.0.1"},
	}}
	type dial struct {
		addr, ip string
		ok       bool
	}
	tests := []struct {
		name      string
		endpoints []string
		dials     []dial // in order
	}{
		{"a public name answering loopback at dial time", []string{"https://registry.test"}, []dial{
			{"registry.test:443", "127.0.0.1", true},
			{"127.0.0.1:2019", "127.0.0.1", false},
			{"localhost:2019", "::1", false},
			{"registry.test:443", "169.254.169.254", true},
			{"metadata:80", "169.254.169.254", false},
			{"cdn.test:443", "198.51.100.1", true},
		}},
		{"a name resolving to a private address once built", []string{"https://lan.test"}, []dial{
			{"storage.lan.test:443", "10.9.9.9", true},
			{"127.0.0.1:2019", "127.0.0.1", false},
		}},
		{"a name resolving to loopback once built", []string{"http://hosts.test:5000"}, []dial{
			{"127.0.0.1:8080", "127.0.0.1", true},
			{"10.0.0.1:80", "10.0.0.1", false},
		}},
		{"a name that does not resolve once built", []string{"https://gone.test"}, []dial{
			{"gone.test:443", "10.0.0.7", true},
			{"10.0.0.8:443", "10.0.0.8", false},
		}},
		{"a loopback address", []string{"http://127.0.0.1:5000"}, []dial{
			{"127.0.0.1:5000", "127.0.0.1", true},
			{"127.0.0.1:2019", "127.0.0.1", true},
			{"169.254.169.254:80", "169.254.169.254", false},
		}},
		{"localhost", []string{"http://localhost:5000"}, []dial{
			{"127.0.0.1:6000", "127.0.0.1", true},
			{"[::1]:6000", "::1", true},
			{"192.168.1.1:80", "192.168.1.1", false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := dns.calls.Load()
			g := guardOf(t, tc.endpoints, nil, dns)
			for _, d := range tc.dials {
				err := g.check(d.addr, netip.MustParseAddr(d.ip))
				if d.ok && err != nil {
					t.Errorf("dial %s at %s: %v, want allowed", d.addr, d.ip, err)
				}
				if !d.ok && !errors.Is(err, ErrInternalAddress) {
					t.Errorf("dial %s at %s: %v, want ErrInternalAddress", d.addr, d.ip, err)
				}
			}
			if n, want := dns.calls.Load()-before, int64(len(tc.endpoints)); strings.Contains(tc.endpoints[0], ".test") && n != want {
				t.Errorf("%d lookups, want %d: the endpoint names resolved once, when the guard was built", n, want)
			}
		})
	}
}

// TestDialGuardProxiedTargets: behind a proxy, which resolves the names
// itself, a redirect or realm target is checked on the mirror's own
// resolution of its name: refused when any answer is internal (and not of
// an endpoint's class nor allowed), let through otherwise; an endpoint's
// own host is never checked, and a name the mirror cannot resolve is left
// to the proxy.
func TestDialGuardProxiedTargets(t *testing.T) {
	dns := &fakeDNS{answers: map[string][]string{
		"registry.test":    {"203.0.113.7"},
		"cdn.test":         {"198.51.100.1", "2001:db8::1"},
		"metadata.test":    {"169.254.169.254"},
		"sneaky.test":      {"198.51.100.2", "127.0.0.1"},
		"lan.test":         {"10.1.2.3"},
		"storage.lan.test": {"10.1.2.4"},
		"nat64.test":       {"64:ff9b::a9fe:a9fe"},
	}}
	proxyURL, _ := url.Parse("http://proxy.corp:3128")
	tests := []struct {
		name      string
		endpoints []string
		allowed   []netip.Prefix
		target    string
		ok        bool
	}{
		{"the endpoint", []string{"https://registry.test"}, nil, "https://registry.test/v2/", true},
		{"a public CDN", []string{"https://registry.test"}, nil, "https://cdn.test/blob", true},
		{"a name at the metadata address", []string{"https://registry.test"}, nil, "http://metadata.test/latest/meta-data/", false},
		{"a name with one loopback answer", []string{"https://registry.test"}, nil, "https://sneaky.test/blob", false},
		{"a name at the metadata address through NAT64", []string{"https://registry.test"}, nil, "http://nat64.test/", false},
		{"the metadata address", []string{"https://registry.test"}, nil, "http://169.254.169.254/latest/", false},
		{"loopback", []string{"https://registry.test"}, nil, "http://127.0.0.1:2019/config/", false},
		{"localhost", []string{"https://registry.test"}, nil, "http://localhost:2019/config/", false},
		{"a name of an allowed network", []string{"https://registry.test"}, []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")}, "http://metadata.test/", true},
		{"a private name from a private endpoint", []string{"https://lan.test"}, nil, "https://storage.lan.test/blob", true},
		{"a name the mirror cannot resolve", []string{"https://registry.test"}, nil, "https://unknown.test/blob", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := guardOf(t, tc.endpoints, tc.allowed, dns)
			proxy := g.proxy(func(*http.Request) (*url.URL, error) { return proxyURL, nil })
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			u, err := proxy(req)
			if tc.ok && (err != nil || u != proxyURL) {
				t.Errorf("proxy(%s) = %v, %v; want the proxy", tc.target, u, err)
			}
			if !tc.ok && (!errors.Is(err, ErrInternalAddress) || g.refusals.Load() != 1) {
				t.Errorf("proxy(%s) = %v, %v (%d refusals); want ErrInternalAddress", tc.target, u, err, g.refusals.Load())
			}
		})
	}
}

// TestDialGuardPublicNamesAreNotResolved: the names of well-known public
// registries are not looked up when their guard is built, and the guard
// is ready at once; other names are looked up once, in the background.
func TestDialGuardPublicNamesAreNotResolved(t *testing.T) {
	tests := []struct {
		name        string
		publicNames bool
		wantLookups int64
	}{
		{"well-known public endpoints", true, 0},
		{"an operator's endpoint", false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse("https://registry.test")
			if err != nil {
				t.Fatal(err)
			}
			dns := &fakeDNS{answers: map[string][]string{"registry.test": {"10.1.2.3"}}}
			g := newDialGuard("x", []*endpoint{{base: u}}, nil, dns.lookup, tc.publicNames, nil, episode.Options{})
			<-g.resolved
			if n := dns.calls.Load(); n != tc.wantLookups {
				t.Errorf("%d lookups, want %d", n, tc.wantLookups)
			}
			err = g.check("10.9.9.9:443", netip.MustParseAddr("10.9.9.9"))
			if tc.publicNames != errors.Is(err, ErrInternalAddress) {
				t.Errorf("a redirect to a private address: %v; want refused only for public endpoints", err)
			}
		})
	}
}
