package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// seeded returns n pseudo-random bytes drawn from seed, and their digest.
func seeded(n int, seed byte) ([]byte, digest.Digest) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{seed, 1})
	_, _ = r.Read(b)
	return b, digest.FromBytes(b)
}

// waitWithinBudget waits until the store's bytes fit its budget, failing
// the test if that never happens.
func waitWithinBudget(t *testing.T, s *Store) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if st.UsedBytes+st.ReservedBytes <= st.BudgetBytes {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache never came within its budget: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSettled waits until the store is within its budget and every one of
// the total objects it ever held is either stored or counted as evicted
// (an eviction pass counts each object just after removing it).
// An eviction pass goes on below the budget, to its low-water mark, so
// the figures must also have stopped changing.
func waitSettled(t *testing.T, s *Store, total int64) Stats {
	t.Helper()
	waitWithinBudget(t, s)
	deadline := time.Now().Add(10 * time.Second)
	var last Stats
	stable := 0
	for {
		st := s.Stats()
		if st.Evictions+st.Objects == total && st == last {
			if stable++; stable >= 5 {
				return st
			}
		} else {
			stable = 0
		}
		last = st
		if time.Now().After(deadline) {
			t.Fatalf("%d objects stored and %d evicted, of %d", st.Objects, st.Evictions, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// present returns which of ds are stored, as their indexes.
func present(t *testing.T, s *Store, ds []digest.Digest) []int {
	t.Helper()
	var got []int
	for i, d := range ds {
		_, err := s.Stat(d)
		switch {
		case err == nil:
			got = append(got, i)
		case !errors.Is(err, ErrNotFound):
			t.Fatalf("Stat(%s) = %v", d, err)
		}
	}
	return got
}

func TestEvictionOrder(t *testing.T) {
	const size = 1000
	tests := []struct {
		name string
		// kinds of the objects stored in order, one second apart: 'b' for
		// a blob, 'm' for a manifest.
		kinds string
		// read is read again after all are stored (most recent access).
		read []int
		// open holds a reader of these objects while eviction runs.
		open   []int
		budget int64
		want   []int
	}{
		{"least recently stored go first", "bbbbb", nil, nil, 3 * size, []int{3, 4}},
		{"a read counts as use", "bbbbb", []int{0}, nil, 3 * size, []int{0, 4}},
		{"an object being read stays", "bbbbb", nil, []int{0}, 3 * size, []int{0, 4}},
		{"blobs before manifests", "mmbbb", nil, nil, 3 * size, []int{0, 1}},
		{"manifests when no blob is left", "mmmbb", nil, nil, 2*size + size/2, []int{1, 2}},
		{"within budget nothing goes", "bbb", nil, nil, 3 * size, []int{0, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{t: time.Unix(1000, 0)}
			// No budget while storing: the eviction to check runs once,
			// when the budget is set below.
			s := openTestWith(t, Options{Dir: t.TempDir(), Now: clk.Now})
			var ds []digest.Digest
			for i, k := range tc.kinds {
				data, d := seeded(size, byte(i))
				mt := blobMediaType
				if k == 'm' {
					mt = manifestType
				}
				clk.Set(time.Unix(int64(2000+i), 0))
				if err := s.Put(d, mt, data); err != nil {
					t.Fatal(err)
				}
				ds = append(ds, d)
			}
			clk.Set(time.Unix(5000, 0))
			for _, i := range tc.read {
				if _, _, err := s.ReadAll(ds[i], size); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range tc.open {
				r, err := s.Open(t.Context(), ds[i])
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
			}
			s.SetMaxBytes(tc.budget)
			st := waitSettled(t, s, int64(len(ds)))
			if got := present(t, s, ds); !slices.Equal(got, tc.want) {
				t.Errorf("kept %v, want %v (stats %+v)", got, tc.want, st)
			}
			wantUsed := int64(len(tc.want) * size)
			if st.UsedBytes != wantUsed || st.Objects != int64(len(tc.want)) {
				t.Errorf("stats: %d objects, %d bytes; want %d, %d", st.Objects, st.UsedBytes, len(tc.want), wantUsed)
			}
			if st.Evictions != int64(len(ds)-len(tc.want)) {
				t.Errorf("stats: %d evictions, want %d", st.Evictions, len(ds)-len(tc.want))
			}
		})
	}
}

// blobMediaType is what the mirror records for blobs.
const blobMediaType = "application/octet-stream"

func TestFillsStayWithinBudget(t *testing.T) {
	const size, budget = 4096, 10 * 4096
	s := openTestWith(t, Options{Dir: t.TempDir(), MaxBytes: budget})
	var last digest.Digest
	for i := range 40 {
		data, d := seeded(size, byte(i))
		r, err := s.Fill(t.Context(), d, fetchOf(data, size, nil))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(got) != string(data) {
			t.Fatalf("fill %d: %d bytes, %v", i, len(got), err)
		}
		last = d
	}
	st := waitSettled(t, s, 40)
	if st.Evictions+st.Objects != 40 || st.Objects > 10 {
		t.Errorf("%d evictions and %d objects left after 40 objects of a 10-object budget", st.Evictions, st.Objects)
	}
	if _, err := s.Stat(last); err != nil {
		t.Errorf("the last object filled was evicted: %v", err)
	}
	// A pass may still be finishing: files and counts agree once it has.
	for deadline := time.Now().Add(10 * time.Second); ; {
		n := len(dirEntries(t, filepath.Join(s.Dir(), "blobs")))
		st = s.Stats()
		if int64(n) == st.Objects && n <= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d files on disk, stats say %d objects", n, st.Objects)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLargerThanBudgetIsNotWritten(t *testing.T) {
	tests := []struct {
		name string
		size int64 // announced size; -1: unknown
	}{
		{"announced size", 8192},
		{"unknown size", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestWith(t, Options{Dir: t.TempDir(), MaxBytes: 4096})
			data, d := seeded(8192, 7)
			r, err := s.Fill(t.Context(), d, fetchOf(data, tc.size, nil))
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("filling more than the budget: %v, want ErrTooLarge", err)
			}
			waitFillsDone(t, s)
			if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
				t.Errorf("Stat = %v, want ErrNotFound", err)
			}
			if st := s.Stats(); st.NotStored != 1 || st.UsedBytes != 0 || st.ReservedBytes != 0 {
				t.Errorf("stats %+v, want 1 not stored and nothing used or reserved", st)
			}
			if left := dirEntries(t, filepath.Join(s.Dir(), "ingest")); len(left) != 0 {
				t.Errorf("ingest/ keeps %v", left)
			}
		})
	}
}

func TestFillSlots(t *testing.T) {
	s := openTestWith(t, Options{Dir: t.TempDir(), MaxFills: 1, FillQueueTimeout: 100 * time.Millisecond})
	var calls atomic.Int64
	fetch, pw := pipeFetch(-1, &calls)
	_, d1 := seeded(10, 1)
	r1, err := s.Fill(t.Context(), d1, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	// A second digest finds the one slot taken and gives up after the
	// queue timeout; joining the running fill needs no slot.
	data2, d2 := seeded(10, 2)
	if _, err := s.Fill(t.Context(), d2, fetchOf(data2, 10, nil)); !errors.Is(err, ErrBusy) {
		t.Errorf("Fill with every slot taken = %v, want ErrBusy", err)
	}
	r1b, err := s.Fill(t.Context(), d1, fetchOf(nil, 0, nil))
	if err != nil {
		t.Fatalf("joining the running fill: %v", err)
	}
	r1b.Close()
	// A waiting fill starts as soon as the slot frees.
	done := make(chan error, 1)
	go func() {
		r, err := s.Fill(context.Background(), d2, fetchOf(data2, 10, nil))
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		done <- err
	}()
	_ = pw.CloseWithError(errors.New("upstream gone"))
	if err := <-done; err != nil {
		t.Errorf("the queued fill: %v", err)
	}
	// The broken body is tried again from where it broke, until the
	// attempts without progress are spent.
	if want := int64(1 + DefaultFillRetries); calls.Load() != want {
		t.Errorf("%d fetches of the first digest, want %d", calls.Load(), want)
	}
}

// waitFillsDone waits until no fill is registered.
func waitFillsDone(t testing.TB, s *Store) {
	t.Helper()
	waitFillsAtMost(t, s, 0)
}

// waitFillsAtMost waits until at most n fills are registered.
func waitFillsAtMost(t testing.TB, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		left := len(s.fills)
		s.mu.Unlock()
		if left <= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d fills never ended", left)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReconcileAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	kept, dk := seeded(100, 1)
	lost, dl := seeded(200, 2)
	if err := s.Put(dk, manifestType, kept); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(dl, manifestType, lost); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What crashes leave: a record whose file is gone (killed between
	// removing a file and its record), and a file without a record.
	if err := os.Remove(filepath.Join(dir, "blobs", "sha256", dl.Encoded())); err != nil {
		t.Fatal(err)
	}
	orphan, do := seeded(300, 3)
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", do.Encoded()), orphan, 0o644); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The adopted file's record is written before its bytes are
		// counted: wait for both.
		_, adopted := s.readObjectMeta(do)
		_, ghost := s.readObjectMeta(dl)
		st := s.Stats()
		if adopted && !ghost && st.Objects == 2 && st.UsedBytes == 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after reconciliation: orphan adopted %v, ghost record left %v, %d objects, %d bytes; want 2, 400",
				adopted, ghost, st.Objects, st.UsedBytes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mountTmpfs mounts a tmpfs of the given size on a new directory, for the
// tests of a full disk. It needs root; elsewhere the test is skipped
// (failed under CI=true).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a tmpfs: %v: %s", err, out)
		}
		t.Skipf("mounting a tmpfs needs root: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func TestDiskFull(t *testing.T) {
	disk := mountTmpfs(t, "1m")
	clk := &clock{t: time.Unix(1000, 0)}
	s := openTestWith(t, Options{Dir: filepath.Join(disk, "cache"), Now: clk.Now, WriteRetryInterval: time.Minute})
	// Something else takes most of the disk.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 900<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	big, db := seeded(300<<10, 1)
	r, err := s.Fill(t.Context(), db, fetchOf(big, int64(len(big)), nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	r.Close()
	if !errors.Is(err, ErrUnwritable) {
		t.Fatalf("reading a fill that outgrows the disk: %v, want ErrUnwritable", err)
	}
	if st := s.Stats(); !st.Unwritable || st.WriteFailures != 1 {
		t.Errorf("stats %+v: want unwritable after one write failure", st)
	}
	// While unwritable, a fill and a Put fail at once, without writing.
	small, ds := seeded(1000, 2)
	if _, err := s.Fill(t.Context(), ds, fetchOf(small, 1000, nil)); !errors.Is(err, ErrUnwritable) {
		t.Errorf("Fill while unwritable = %v, want ErrUnwritable", err)
	}
	if err := s.Put(ds, manifestType, small); !errors.Is(err, ErrUnwritable) {
		t.Errorf("Put while unwritable = %v, want ErrUnwritable", err)
	}
	waitFillsDone(t, s)
	if left := dirEntries(t, filepath.Join(s.Dir(), "ingest")); len(left) != 0 {
		t.Errorf("ingest/ keeps %v", left)
	}
	// Space returns; after the retry interval the store writes again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Unix(1000, 0).Add(2 * time.Minute))
	r, err = s.Fill(t.Context(), db, fetchOf(big, int64(len(big)), nil))
	if err != nil {
		t.Fatalf("Fill after space returned: %v", err)
	}
	if err := r.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	waitFillsDone(t, s)
	if _, err := s.Stat(db); err != nil {
		t.Errorf("Stat after space returned: %v", err)
	}
	if st := s.Stats(); st.Unwritable || st.NotStored < 2 {
		t.Errorf("stats %+v: want writable again, and the contents not stored counted", st)
	}
}

// buildLargeCache writes n small objects straight into a cache directory
// (files and one metadata transaction, no fsync), as a cache that served
// for months would hold them, and returns their digests.
func buildLargeCache(tb testing.TB, dir string, n int) []digest.Digest {
	tb.Helper()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		tb.Fatal(err)
	}
	ds := make([]digest.Digest, n)
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(objectsBucket)
		for i := range n {
			data := []byte(fmt.Sprintf("object %d", i))
			d := digest.FromBytes(data)
			ds[i] = d
			path, _ := s.blobPath(d)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return err
			}
			v, _ := json.Marshal(objectMeta{Size: int64(len(data)), MediaType: blobMediaType, LastAccess: int64(i)})
			if err := b.Put([]byte(d), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return ds
}

// BenchmarkOpenLargeCache measures a start with 100,000 cached objects:
// Open until the first object is served. The reconciliation with the disk
// goes on in the background and is not part of it.
func BenchmarkOpenLargeCache(b *testing.B) {
	dir := b.TempDir()
	ds := buildLargeCache(b, dir, 100_000)
	for b.Loop() {
		s, err := Open(Options{Dir: dir, MaxBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		r, err := s.Open(context.Background(), ds[len(ds)/2])
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
		b.StopTimer()
		if st := s.Stats(); st.Objects < 100_000 {
			b.Fatalf("%d objects counted", st.Objects)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
