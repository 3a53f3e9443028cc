package cache

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

func TestPrefetchLeavesSlotsForClients(t *testing.T) {
	s := openTestWith(t, Options{Dir: t.TempDir(), MaxFills: 4, FillQueueTimeout: 50 * time.Millisecond})
	// Two client fills hold two of the four slots.
	var calls atomic.Int64
	var pipes []*io.PipeWriter
	for i := range 2 {
		_, d := seeded(1000, byte(10+i))
		fetch, pw := pipeFetch(1000, &calls)
		pipes = append(pipes, pw)
		r, err := s.Fill(t.Context(), d, fetch)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
	}
	defer func() {
		for _, pw := range pipes {
			_ = pw.CloseWithError(errors.New("test over"))
		}
	}()
	// With two free, a prefetch takes one (a quarter, one slot, stays free).
	data, d := seeded(1000, 20)
	var prefetched atomic.Int64
	fetch, pw := pipeFetch(1000, &prefetched)
	if !s.Prefetch(d, fetch) {
		t.Fatal("a prefetch with two of four slots free did not start")
	}
	if s.Prefetch(d, fetchOf(data, 1000, nil)) {
		t.Error("a second prefetch of a digest being filled started")
	}
	// One slot left: it is the clients'.
	other, od := seeded(1000, 21)
	if s.Prefetch(od, fetchOf(other, 1000, nil)) {
		t.Error("a prefetch took the last free slot")
	}
	r, err := s.Fill(t.Context(), od, fetchOf(other, 1000, nil))
	if err != nil {
		t.Fatalf("a client's fill with the last slot: %v", err)
	}
	if got, err := io.ReadAll(r); err != nil || len(got) != 1000 {
		t.Errorf("the client's fill: %d bytes, %v", len(got), err)
	}
	r.Close()
	// A client of the prefetched digest joins its fill.
	r, err = s.Fill(t.Context(), d, fetchOf(data, 1000, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(data); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got, err := io.ReadAll(r); err != nil || len(got) != 1000 {
		t.Errorf("joining the prefetch: %d bytes, %v", len(got), err)
	}
	r.Close()
	if prefetched.Load() != 1 {
		t.Errorf("the prefetched digest was fetched %d times, want 1", prefetched.Load())
	}
	waitFillsAtMost(t, s, 2)
	if s.Prefetch(d, fetchOf(data, 1000, nil)) {
		t.Error("a prefetch of a stored digest started")
	}
	if n := s.Stats().Prefetches; n != 1 {
		t.Errorf("%d prefetches counted, want 1", n)
	}
}
