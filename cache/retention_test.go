package cache

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

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
