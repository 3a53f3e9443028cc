package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/episode"
)

// ErrInternalAddress means the client refused to connect to a loopback,
// link-local or private address that an upstream redirected it to or named
// as its token realm (see AddrClass).
var ErrInternalAddress = errors.New("refusing to connect to an internal address")

// AddrClass is the kind of network an IP address belongs to, for the dial
// guard: a redirect or token realm may lead the client to an address of
// another class than public only when an endpoint of the upstream is in
// that class, or the address is in Options.AllowedNetworks.
type AddrClass uint8

// The address classes.
const (
	// ClassPublic is every address not in another class.
	ClassPublic AddrClass = iota
	// ClassLoopback is 127.0.0.0/8 and ::1.
	ClassLoopback
	// ClassLinkLocal is 169.254.0.0/16 and fe80::/10, where cloud
	// metadata services answer.
	ClassLinkLocal
	// ClassPrivate is 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC
	// 1918), 100.64.0.0/10 (RFC 6598 shared address space, where some
	// clouds serve metadata too) and fc00::/7 (unique local).
	ClassPrivate
	// ClassUnspecified is 0.0.0.0/8 and ::, which reach the local host.
	ClassUnspecified
)

// String returns the name of the class.
func (c AddrClass) String() string {
	switch c {
	case ClassLoopback:
		return "loopback"
	case ClassLinkLocal:
		return "link-local"
	case ClassPrivate:
		return "private"
	case ClassUnspecified:
		return "unspecified"
	}
	return "public"
}

// privatePrefixes are the prefixes of ClassPrivate.
var privatePrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fc00::/7"),
}

// The IPv6 prefixes that carry an IPv4 address a connection ends up at.
var (
	// nat64Prefix is the NAT64 well-known prefix (RFC 6052): the IPv4
	// address is the last 32 bits.
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	// nat64LocalPrefix is the local-use NAT64 prefix (RFC 8215), where
	// the IPv4 address sits after a site-chosen prefix length: the whole
	// prefix is taken as private.
	nat64LocalPrefix = netip.MustParsePrefix("64:ff9b:1::/48")
	// sixToFourPrefix is 6to4 (RFC 3056): the IPv4 address is bits 16 to
	// 47.
	sixToFourPrefix = netip.MustParsePrefix("2002::/16")
)

// embeddedIPv4 returns the IPv4 address ip stands for: its own when
// IPv4-mapped, the one a NAT64 well-known prefix or a 6to4 address
// carries, or ip itself.
func embeddedIPv4(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	b := ip.As16()
	switch {
	case !ip.Is6():
	case nat64Prefix.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFourPrefix.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return ip
}

// ClassOf returns the class of ip. An IPv4-mapped IPv6 address, a NAT64
// address of the well-known prefix 64:ff9b::/96 and a 6to4 address
// (2002::/16) are classed by the IPv4 address they carry; the local-use
// NAT64 prefix 64:ff9b:1::/48 is private.
func ClassOf(ip netip.Addr) AddrClass {
	ip = embeddedIPv4(ip)
	if nat64LocalPrefix.Contains(ip) {
		return ClassPrivate
	}
	switch {
	case ip.IsLoopback():
		return ClassLoopback
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return ClassLinkLocal
	case ip.IsUnspecified(), ip.Is4() && ip.As4()[0] == 0:
		return ClassUnspecified
	}
	for _, p := range privatePrefixes {
		if p.Contains(ip) {
			return ClassPrivate
		}
	}
	return ClassPublic
}

// DialAllowed decides whether the client may connect to dialed, an address
// reached by a redirect or a token realm (not by an endpoint's own host):
// a public address always, any other when an endpoint of the upstream is
// in its class (endpointClasses) or it, or the IPv4 address it carries
// (see ClassOf), is in one of the allowed prefixes.
func DialAllowed(endpointClasses []AddrClass, allowed []netip.Prefix, dialed netip.Addr) bool {
	dialed = dialed.Unmap()
	carried := embeddedIPv4(dialed)
	class := ClassOf(dialed)
	if class == ClassPublic {
		return true
	}
	for _, c := range endpointClasses {
		if c == class {
			return true
		}
	}
	for _, p := range allowed {
		if p.Contains(dialed) || p.Contains(carried) {
			return true
		}
	}
	return false
}

// lookupFunc resolves a host name to its addresses.
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// lookupIP is the system resolver's lookupFunc.
func lookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// endpointLookupTimeout bounds the resolution of the endpoints' names when
// a guard is built.
const endpointLookupTimeout = 5 * time.Second

// dialGuard checks every connection of a client's default transport at
// dial time, on the resolved address (so that a DNS answer changed after
// a check cannot slip through): connections to an endpoint's own host
// are always made; any other goes to an internal address only as
// DialAllowed says, with the classes of the endpoints as the
// configuration gives them (their literal addresses, localhost, and their
// names resolved once when the guard is built). Live DNS answers never
// widen them: a hostile answer for an endpoint's name reaches that
// endpoint's host only, not the rest of its network class.
type dialGuard struct {
	upstream  string
	allowed   []netip.Prefix
	endpoints map[string]bool // host:port of the endpoints, lowercase
	// classes of the endpoints' addresses: those of the configuration at
	// once, then with the classes their names resolved to (see
	// newDialGuard); never widened after that.
	classes atomic.Pointer[[]AddrClass]
	// resolved is closed when the endpoints' names were resolved (or
	// their resolution gave up).
	resolved chan struct{}
	lookup   lookupFunc // nil: proxied names are left to the proxy
	proxies  sync.Map   // host:port of proxies in use -> true
	refusals atomic.Int64
	refused  *episode.Log
	log      *zap.Logger
}

// newDialGuard returns the guard of endpoints. lookup resolves, once, in
// the background (a slow resolver never holds up a configuration load),
// the endpoints' names that are neither IP addresses nor localhost, and
// later the names of proxied targets (see proxy); nil resolves nothing.
// With publicNames the endpoints' names are known public hosts (the
// well-known registries) and are not resolved.
func newDialGuard(name string, endpoints []*endpoint, allowed []netip.Prefix, lookup lookupFunc, publicNames bool, log *zap.Logger, opts episode.Options) *dialGuard {
	if log == nil {
		log = zap.NewNop()
	}
	g := &dialGuard{upstream: name, allowed: allowed, endpoints: map[string]bool{}, lookup: lookup, log: log,
		resolved: make(chan struct{})}
	g.refused = episode.New(log, zapcore.WarnLevel, "refused to connect to an internal address an upstream sent the mirror to", opts)
	var classes []AddrClass
	var names []string
	for _, ep := range endpoints {
		g.endpoints[hostPort(ep.base)] = true
		host := strings.ToLower(ep.base.Hostname())
		if ip, err := netip.ParseAddr(host); err == nil {
			classes = withClass(classes, ClassOf(ip))
		} else if isLocalhost(host) {
			classes = withClass(classes, ClassLoopback)
		} else if !slices.Contains(names, host) {
			names = append(names, host)
		}
	}
	g.classes.Store(&classes)
	if lookup == nil || publicNames || len(names) == 0 {
		close(g.resolved)
		return g
	}
	go g.resolveEndpoints(names, classes)
	return g
}

// resolveEndpoints resolves the endpoints' names once, within
// endpointLookupTimeout, and adds the classes of their addresses to the
// configured ones.
func (g *dialGuard) resolveEndpoints(names []string, classes []AddrClass) {
	defer close(g.resolved)
	ctx, cancel := context.WithTimeout(context.Background(), endpointLookupTimeout)
	defer cancel()
	answers := make([][]netip.Addr, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, host := range names {
		wg.Go(func() { answers[i], errs[i] = g.lookup(ctx, host) })
	}
	wg.Wait()
	learned := slices.Clone(classes)
	for i, host := range names {
		if errs[i] != nil {
			g.log.Debug("an endpoint's name did not resolve when the upstream was set up: redirects and realms may lead to internal addresses of allowed_networks only",
				zap.String("upstream", g.upstream), zap.String("host", host), zap.Error(errs[i]))
			continue
		}
		for _, ip := range answers[i] {
			learned = withClass(learned, ClassOf(ip))
		}
	}
	g.classes.Store(&learned)
}

// isLocalhost reports whether the lowercase host name is localhost or a
// name under it (RFC 6761: always loopback).
func isLocalhost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// hostPort returns u's lowercase host:port, with the scheme's default
// port when it names none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return strings.ToLower(net.JoinHostPort(u.Hostname(), port))
}

// withClass adds an internal address class of an endpoint to classes.
func withClass(classes []AddrClass, c AddrClass) []AddrClass {
	if c != ClassPublic && !slices.Contains(classes, c) {
		classes = append(classes, c)
	}
	return classes
}

// check decides a connection to ip for the dial of host:port addr. An
// endpoint's own host is let through wherever it resolves, and teaches
// nothing.
func (g *dialGuard) check(addr string, ip netip.Addr) error {
	key := strings.ToLower(addr)
	if g.endpoints[key] {
		return nil
	}
	if _, ok := g.proxies.Load(key); ok {
		return nil
	}
	if DialAllowed(*g.classes.Load(), g.allowed, ip) {
		return nil
	}
	return g.refuse(addr, ip)
}

// refuse counts, logs and returns the refusal of a connection to ip.
func (g *dialGuard) refuse(addr string, ip netip.Addr) error {
	g.refusals.Add(1)
	g.refused.Event(zap.String("upstream", g.upstream), zap.String("target", addr), zap.String("address", ip.String()),
		zap.String("class", ClassOf(ip).String()))
	return fmt.Errorf("%w: %s is at %s, a %s address, and no endpoint of upstream %s is",
		ErrInternalAddress, addr, ip, ClassOf(ip), g.upstream)
}

// dialContext returns the transport's DialContext: d's, with the check
// run on the resolved address of each connection.
func (g *dialGuard) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dd := *d
		dd.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("dialing %s: %w", address, err)
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return fmt.Errorf("dialing %s: %w", address, err)
			}
			return g.check(addr, ip)
		}
		return dd.DialContext(ctx, network, addr)
	}
}

// proxy wraps a transport's Proxy function: a proxy it names is dialed
// without a check (the operator configured it). Since the proxy resolves
// the target's name, a target other than an endpoint's host is checked
// here instead, before the request leaves: an IP address as it is,
// localhost as loopback, and another name on the mirror's own resolution
// of it, refused when any answer is an internal address DialAllowed does
// not allow. A name the mirror cannot resolve (where only the proxy
// resolves names, say) is left to the proxy.
func (g *dialGuard) proxy(next func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	if next == nil {
		return nil
	}
	return func(req *http.Request) (*url.URL, error) {
		u, err := next(req)
		if err != nil || u == nil {
			return u, err
		}
		g.proxies.Store(hostPort(u), true)
		target := hostPort(req.URL)
		if g.endpoints[target] {
			return u, nil
		}
		if err := g.checkProxied(req.Context(), target, strings.ToLower(req.URL.Hostname())); err != nil {
			return nil, err
		}
		return u, nil
	}
}

// proxiedLookupTimeout bounds the resolution of a proxied target's name.
const proxiedLookupTimeout = 5 * time.Second

// loopbackAddrs are the addresses of localhost.
var loopbackAddrs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}

// checkProxied decides a request through a proxy to host (lowercase) at
// host:port target.
func (g *dialGuard) checkProxied(ctx context.Context, target, host string) error {
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if isLocalhost(host) {
		ips = loopbackAddrs
	} else if g.lookup != nil {
		ctx, cancel := context.WithTimeout(ctx, proxiedLookupTimeout)
		defer cancel()
		if ips, err = g.lookup(ctx, host); err != nil {
			if ce := g.log.Check(zap.DebugLevel, "a proxied target's name did not resolve at the mirror; the proxy resolves it"); ce != nil {
				ce.Write(zap.String("upstream", g.upstream), zap.String("target", target), zap.Error(err))
			}
			return nil
		}
	}
	for _, ip := range ips {
		if !DialAllowed(*g.classes.Load(), g.allowed, ip) {
			return g.refuse(target, ip)
		}
	}
	return nil
}
