package records

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
)

const manifestType = "application/vnd.oci.image.manifest.v1+json"

// testStore is a content store with its records, opened as the server
// opens them.
type testStore struct {
	*content
	*Store
}

// content is the content store, embedded in testStore under its own name.
type content = cache.Store

// openTest opens a content store in dir with its records, closed at the
// test's end.
func openTest(t testing.TB, dir string) testStore {
	t.Helper()
	return openTestWith(t, cache.Options{Dir: dir})
}

// openTestWith is openTest with opts.
func openTestWith(t testing.TB, opts cache.Options) testStore {
	t.Helper()
	r := New()
	opts.Dependent = r
	c, err := cache.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return testStore{c, r}
}

// seeded returns n pseudo-random bytes of seed and their digest.
func seeded(n int, seed byte) ([]byte, digest.Digest) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{seed, 1})
	_, _ = r.Read(b)
	return b, digest.FromBytes(b)
}

// stored returns the indexes of the objects of ds that s holds.
func stored(t *testing.T, s testStore, ds []digest.Digest) []int {
	t.Helper()
	var got []int
	for i, d := range ds {
		if _, err := s.Stat(d); err == nil {
			got = append(got, i)
		} else if !errors.Is(err, cache.ErrNotFound) {
			t.Fatalf("Stat(%s) = %v", d, err)
		}
	}
	return got
}

func TestRestartKeepsTags(t *testing.T) {
	dir := t.TempDir()
	s := New()
	c, err := cache.Open(cache.Options{Dir: dir, Dependent: s})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"mediaType":"x"}`)
	d := digest.FromBytes(data)
	const mt = "application/vnd.docker.distribution.manifest.v2+json"
	fetched := time.Unix(1_700_000_000, 0).UTC()
	if err := c.Put(d, mt, data); err != nil {
		t.Fatal(err)
	}
	tag := cache.Tag{Digest: d, MediaType: mt, Size: int64(len(data)), FetchedAt: fetched}
	if err := s.SetTag("docker.io", "library/alpine", "3.19", tag); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTest(t, dir)
	got, err := s2.Tag("docker.io", "library/alpine", "3.19")
	if err != nil || got.Digest != d || got.MediaType != mt || got.Size != tag.Size || !got.FetchedAt.Equal(fetched) {
		t.Errorf("after restart Tag = %+v, %v", got, err)
	}
}

func TestClosedStore(t *testing.T) {
	s := New()
	c, err := cache.Open(cache.Options{Dir: t.TempDir(), Dependent: s})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	checks["SetTag"] = s.SetTag("u", "r", "t", cache.Tag{})
	_, checks["Tag"] = s.Tag("u", "r", "t")
	for op, err := range checks {
		if !errors.Is(err, cache.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
}

// TestEvictIdle stores objects at one time, reads some later, pins some,
// and checks what a pass of idle eviction keeps, with the tags of what it
// removed.
func TestEvictIdle(t *testing.T) {
	const size = 1000
	day := 24 * time.Hour
	tests := []struct {
		name    string
		maxIdle time.Duration
		read    []int // read at day 20
		pinned  []int
		// later is the time of the pass, in days after the store.
		later time.Duration
		want  []int // objects kept
	}{
		{"unused content goes", 30 * day, nil, nil, 31 * day, nil},
		{"within max_idle everything stays", 30 * day, nil, nil, 29 * day, []int{0, 1, 2}},
		{"recently read content stays", 30 * day, []int{1}, nil, 31 * day, []int{1}},
		{"pinned content stays", 30 * day, nil, []int{0, 2}, 31 * day, []int{0, 2}},
		{"read and pinned", 30 * day, []int{0}, []int{2}, 31 * day, []int{0, 2}},
		{"no max_idle keeps all", 0, nil, nil, 400 * day, []int{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Unix(1_000_000, 0)
			var at atomic.Int64 // the clock, in Unix nanoseconds
			at.Store(start.UnixNano())
			now := func() time.Time { return time.Unix(0, at.Load()) }
			s := openTestWith(t, cache.Options{Dir: t.TempDir(), Now: now, MaxIdle: tc.maxIdle})
			var ds []digest.Digest
			for i := range 3 {
				data, d := seeded(size, byte(i))
				if err := s.Put(d, manifestType, data); err != nil {
					t.Fatal(err)
				}
				if err := s.SetTag("docker.io", "library/x", string(rune('a'+i)), cache.Tag{Digest: d}); err != nil {
					t.Fatal(err)
				}
				ds = append(ds, d)
			}
			at.Store(start.Add(20 * day).UnixNano())
			for _, i := range tc.read {
				if _, _, err := s.ReadAll(ds[i], size); err != nil {
					t.Fatal(err)
				}
			}
			var pins []digest.Digest
			for _, i := range tc.pinned {
				pins = append(pins, ds[i])
			}
			s.Pin("rule", pins)
			at.Store(start.Add(tc.later).UnixNano())
			res, err := s.EvictIdle()
			if err != nil {
				t.Fatal(err)
			}
			got := stored(t, s, ds)
			if !slices.Equal(got, tc.want) {
				t.Errorf("kept %v, want %v", got, tc.want)
			}
			if int(res.Objects) != 3-len(tc.want) || res.Tags != 3-len(tc.want) {
				t.Errorf("EvictIdle = %+v, want %d objects and tags", res, 3-len(tc.want))
			}
			for i, d := range ds {
				_, err := s.Tag("docker.io", "library/x", string(rune('a'+i)))
				if kept := slices.Contains(tc.want, i); kept != (err == nil) {
					t.Errorf("tag of object %d (%s): kept %v, err %v", i, d, kept, err)
				}
			}
			if st := s.Stats(); st.IdleEvictions != res.Objects {
				t.Errorf("Stats().IdleEvictions = %d, want %d", st.IdleEvictions, res.Objects)
			}
		})
	}
}

func TestUnattachedStore(t *testing.T) {
	s := New()
	if _, err := s.Tag("u", "r", "t"); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Tag before a content store attached the records = %v, want ErrClosed", err)
	}
	if s.Linked("u", "r", digest.FromString("x")) {
		t.Error("Linked before a content store attached the records = true")
	}
}
