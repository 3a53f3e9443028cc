package mirror

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

func TestNegativeAnswer(t *testing.T) {
	item := func(code oci.Code) []oci.ErrorItem { return []oci.ErrorItem{{Code: code, Message: "m"}} }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"manifest unknown", &upstream.Error{Status: 404, Items: item(oci.CodeManifestUnknown)}, true},
		{"name unknown", &upstream.Error{Status: 404, Items: item(oci.CodeNameUnknown)}, true},
		{"no body", &upstream.Error{Status: 404}, true},
		{"wrapped", fmt.Errorf("fetching: %w", &upstream.Error{Status: 404}), true},
		{"other 404 code", &upstream.Error{Status: 404, Items: item(oci.CodeBlobUnknown)}, false},
		{"mixed codes", &upstream.Error{Status: 404, Items: append(item(oci.CodeManifestUnknown), item(oci.CodeUnknown)...)}, false},
		{"401", &upstream.Error{Status: 401, Items: item(oci.CodeUnauthorized)}, false},
		{"403", &upstream.Error{Status: 403}, false},
		{"429", &upstream.Error{Status: 429, Items: item(oci.CodeTooManyRequests)}, false},
		{"500", &upstream.Error{Status: 500}, false},
		{"held back", &upstream.HeldError{Upstream: "docker.io"}, false},
		{"unreachable", upstream.ErrUnavailable, false},
		{"nil", nil, false},
		{"oci 404", oci.Errorf(404, oci.CodeManifestUnknown, "x"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := negativeAnswer(tc.err); got != tc.want {
				t.Errorf("negativeAnswer(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestNegativeCache(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	notFound := &upstream.Error{Status: 404}
	anon := access.Principal{}
	key := func(ref string) access.Key[negativeKey] {
		return access.KeyOf(anon, negativeKey{registry: "docker.io", repo: "library/a", ref: ref})
	}
	tests := []struct {
		name string
		run  func(c *negativeCache) // stores entries
		ask  access.Key[negativeKey]
		at   time.Duration
		hit  bool
		size int
	}{
		{"remembered", func(c *negativeCache) { c.put(key("1"), notFound, now) }, key("1"), 9 * time.Second, true, 1},
		{"expired", func(c *negativeCache) { c.put(key("1"), notFound, now) }, key("1"), 10 * time.Second, false, 0},
		{"other reference", func(c *negativeCache) { c.put(key("1"), notFound, now) }, key("2"), 0, false, 1},
		{"other credential", func(c *negativeCache) { c.put(key("1"), notFound, now) },
			access.KeyOf(access.NewPrincipal("0123abcd", ""), negativeKey{registry: "docker.io", repo: "library/a", ref: "1"}), 0, false, 1},
		{"other accept", func(c *negativeCache) { c.put(key("1"), notFound, now) },
			access.KeyOf(anon, negativeKey{registry: "docker.io", repo: "library/a", ref: "1", accept: oci.MediaTypeDockerManifest}), 0, false, 1},
		{"not a negative answer", func(c *negativeCache) { c.put(key("1"), &upstream.Error{Status: 503}, now) }, key("1"), 0, false, 0},
		{"oldest evicted when full", func(c *negativeCache) {
			for i := range 4 {
				c.put(key(fmt.Sprint(i)), notFound, now.Add(time.Duration(i)*time.Millisecond))
			}
		}, key("0"), 5 * time.Millisecond, false, 3},
		{"newest kept when full", func(c *negativeCache) {
			for i := range 4 {
				c.put(key(fmt.Sprint(i)), notFound, now.Add(time.Duration(i)*time.Millisecond))
			}
		}, key("3"), 5 * time.Millisecond, true, 3},
		{"expired dropped first", func(c *negativeCache) {
			c.put(key("old"), notFound, now.Add(-time.Minute))
			c.put(key("1"), notFound, now)
		}, key("1"), 0, true, 1},
		{"renewed entry moves to the back", func(c *negativeCache) {
			c.put(key("a"), notFound, now)
			c.put(key("b"), notFound, now.Add(time.Second))
			c.put(key("a"), notFound, now.Add(2*time.Second))
			c.put(key("c"), notFound, now.Add(3*time.Second))
			c.put(key("d"), notFound, now.Add(4*time.Second)) // evicts b, not a
		}, key("a"), 5 * time.Second, true, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newNegativeCache(10*time.Second, 3)
			tc.run(c)
			got := c.get(tc.ask, now.Add(tc.at))
			if (got != nil) != tc.hit {
				t.Errorf("get(%+v) = %v, want hit %v", tc.ask, got, tc.hit)
			}
			if c.len() != tc.size {
				t.Errorf("%d entries, want %d", c.len(), tc.size)
			}
		})
	}
}

func TestNegativeCacheDisabledIsNil(t *testing.T) {
	for _, ttl := range []time.Duration{0, -1} {
		c := newNegativeCache(ttl, 10)
		if c != nil {
			t.Fatalf("newNegativeCache(%s) = %v, want nil", ttl, c)
		}
		key := access.KeyOf(access.Principal{}, negativeKey{ref: "1"})
		if c.put(key, &upstream.Error{Status: 404}, time.Now()) || c.get(key, time.Now()) != nil {
			t.Errorf("a nil cache remembered an answer")
		}
	}
}

func TestHeldToOCI(t *testing.T) {
	tests := []struct {
		retry time.Duration
		want  string
	}{
		{0, "1"},
		{300 * time.Millisecond, "1"},
		{time.Minute, "60"},
		{time.Minute + time.Millisecond, "61"},
	}
	for _, tc := range tests {
		err := fmt.Errorf("fetching: %w", &upstream.HeldError{Upstream: "docker.io", RetryAfter: tc.retry})
		got := toOCI(err)
		if got.Status != 429 || got.Code() != oci.CodeTooManyRequests || got.RetryAfter != tc.want {
			t.Errorf("toOCI(held %s) = %d %s retry %q, want 429 TOOMANYREQUESTS retry %q", tc.retry, got.Status, got.Code(), got.RetryAfter, tc.want)
		}
		if !staleAllowed(err) || !errors.Is(err, upstream.ErrBudgetHeld) {
			t.Errorf("a held-back GET does not allow a stale answer")
		}
	}
}
