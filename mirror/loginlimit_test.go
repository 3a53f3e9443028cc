package mirror

import (
	"net/netip"
	"testing"
	"time"
)

func TestClientPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:5123":          "192.0.2.7/32",
		"192.0.2.7":               "192.0.2.7/32",
		"[2001:db8:1:2:3::4]:443": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9":    "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":        "192.0.2.7/32",
		"not an address":          "invalid Prefix",
	} {
		if got := clientPrefix(in).String(); got != want {
			t.Errorf("clientPrefix(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestLoginLimiter(t *testing.T) {
	a, b := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type step struct {
		at     time.Duration
		addr   netip.Prefix
		refund bool // the check was accepted
		ok     bool
		wait   time.Duration // when refused
	}
	tests := []struct {
		name   string
		limits LoginLimits
		steps  []step
	}{
		{"a burst per address, then one per interval", LoginLimits{Burst: 2, Interval: 10 * time.Second, TotalBurst: 100}, []step{
			{0, a, false, true, 0}, {0, a, false, true, 0}, {0, a, false, false, 10 * time.Second},
			{0, b, false, true, 0}, // another address has its own
			{4 * time.Second, a, false, false, 6 * time.Second},
			{10 * time.Second, a, false, true, 0}, {10 * time.Second, a, false, false, 10 * time.Second},
		}},
		{"accepted checks cost nothing", LoginLimits{Burst: 1, Interval: time.Minute, TotalBurst: 100}, []step{
			{0, a, true, true, 0}, {0, a, true, true, 0}, {0, a, false, true, 0}, {0, a, false, false, time.Minute},
		}},
		{"the shared bucket bounds every address", LoginLimits{Burst: 5, Interval: time.Minute, TotalBurst: 2, TotalInterval: time.Second}, []step{
			{0, a, false, true, 0}, {0, b, false, true, 0}, {0, b, false, false, time.Second},
			{time.Second, a, false, true, 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ll := newLoginLimiter(tc.limits, start)
			for i, s := range tc.steps {
				now := start.Add(s.at)
				wait, ok := ll.take(s.addr, now)
				if ok != s.ok || (!ok && wait != s.wait) {
					t.Fatalf("step %d: take = %v, %v; want %v, %v", i, wait, ok, s.wait, s.ok)
				}
				if ok && s.refund {
					ll.refund(s.addr, now)
				}
			}
		})
	}
	if ll := newLoginLimiter(LoginLimits{Burst: -1}, start); ll != nil {
		t.Errorf("a negative burst leaves the limits on")
	}
	var off *loginLimiter
	if _, ok := off.take(a, start); !ok {
		t.Errorf("no limiter refused a check")
	}
}
