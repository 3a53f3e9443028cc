package cache

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

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
			clk := &clock{t: start}
			s := openTestWith(t, Options{Dir: t.TempDir(), Now: clk.Now, MaxIdle: tc.maxIdle})
			var ds []digest.Digest
			for i := range 3 {
				data, d := seeded(size, byte(i))
				if err := s.Put(d, manifestType, data); err != nil {
					t.Fatal(err)
				}
				if err := s.SetTag("docker.io", "library/x", string(rune('a'+i)), Tag{Digest: d}); err != nil {
					t.Fatal(err)
				}
				ds = append(ds, d)
			}
			clk.Set(start.Add(20 * day))
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
			clk.Set(start.Add(tc.later))
			res, err := s.EvictIdle()
			if err != nil {
				t.Fatal(err)
			}
			got := present(t, s, ds)
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

// TestBudgetSparesPinned checks that eviction for max_size passes over
// pinned objects, and that Unpin releases them.
func TestBudgetSparesPinned(t *testing.T) {
	const size = 1000
	clk := &clock{t: time.Unix(1000, 0)}
	s := openTestWith(t, Options{Dir: t.TempDir(), Now: clk.Now})
	var ds []digest.Digest
	for i := range 4 {
		data, d := seeded(size, byte(i))
		clk.Set(time.Unix(int64(2000+i), 0))
		if err := s.Put(d, blobMediaType, data); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	s.Pin("rule", ds[:2]) // the two least recently used
	s.SetMaxBytes(2 * size)
	waitWithinBudget(t, s)
	if got := present(t, s, ds); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("kept %v, want the pinned [0 1]", got)
	}
	oldest, err := s.Oldest(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(oldest) != 2 || oldest[0].Digest != ds[0] || !oldest[0].Pinned {
		t.Errorf("Oldest = %+v, want the pinned %s first", oldest, ds[0])
	}
	s.Unpin("rule")
	if n := s.PinnedObjects(); n != 0 {
		t.Errorf("PinnedObjects after Unpin = %d", n)
	}
}
