package cache

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		p    *pacer
		ctx  context.Context
		n    int64
		want error
	}{
		{"nil pacer", nil, cancelled, 1 << 30, nil},
		{"no rate", newPacer(-1), cancelled, 1 << 30, nil},
		{"within the rate", newPacer(1 << 40), cancelled, 1, nil},
		// A byte per second owes a wait for a megabyte: the ended
		// context ends it.
		{"ahead of the rate, context ended", newPacer(1), cancelled, 1 << 20, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.wait(tc.ctx, tc.n); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Errorf("wait(%d) = %v, want %v", tc.n, err, tc.want)
			}
		})
	}
}

func TestCheckSoon(t *testing.T) {
	tests := []struct {
		name          string
		scrubInterval time.Duration
		damaged       bool
		wantRemoved   bool
		wantVerified  bool
	}{
		{"intact", 0, false, false, true},
		{"damaged", 0, true, true, false},
		{"scrub off: no check", -1, true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, ScrubInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			d := putObject(t, s, "application/octet-stream", testBlob(20, 50_000))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.damaged {
				flipByte(middle)(t, filepath.Join(dir, "blobs", "sha256", d.Encoded()))
			}
			s = openTestWith(t, Options{Dir: dir, ScrubInterval: tc.scrubInterval, ScrubRate: -1})
			s.CheckSoon(d)
			s.CheckSoon(d) // queued once
			if tc.scrubInterval < 0 {
				if s.Verified(d) || s.IntegrityStats().CorruptObjects != 0 {
					t.Errorf("checked with the scrub off")
				}
				return
			}
			waitFor(t, "the check", func() bool {
				_, err := s.Stat(d)
				return s.Verified(d) || errors.Is(err, ErrNotFound)
			})
			_, err = s.Stat(d)
			if removed := errors.Is(err, ErrNotFound); removed != tc.wantRemoved || s.Verified(d) != tc.wantVerified {
				t.Errorf("removed %v, verified %v; want %v, %v", removed, s.Verified(d), tc.wantRemoved, tc.wantVerified)
			}
			if got := s.IntegrityStats().CorruptObjects; got != int64(btoi(tc.wantRemoved)) {
				t.Errorf("CorruptObjects = %d", got)
			}
		})
	}
}
