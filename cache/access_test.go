package cache

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func TestLastAccess(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Unix(1000, 0)}
	s, err := Open(Options{Dir: dir, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	stored := []byte("stored")
	ds := digest.FromBytes(stored)
	if err := s.Put(ds, "", stored); err != nil {
		t.Fatal(err)
	}
	// A file without metadata gets a record when it is accessed.
	copied := []byte("copied")
	dc := digest.FromBytes(copied)
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", dc.Encoded()), copied, 0o644); err != nil {
		t.Fatal(err)
	}
	if at, ok := s.LastAccess(ds); !ok || !at.Equal(time.Unix(1000, 0)) {
		t.Errorf("LastAccess after Put = %v, %v; want the time of the Put", at, ok)
	}

	tests := []struct {
		name   string
		d      digest.Digest
		at     int64
		access func(d digest.Digest) error
	}{
		{"Stat", ds, 2000, func(d digest.Digest) error { _, err := s.Stat(d); return err }},
		{"ReadAll", ds, 3000, func(d digest.Digest) error { _, _, err := s.ReadAll(d, 100); return err }},
		{"Open", ds, 4000, func(d digest.Digest) error {
			r, err := s.Open(context.Background(), d)
			if err == nil {
				r.Close()
			}
			return err
		}},
		{"file without metadata", dc, 5000, func(d digest.Digest) error { _, err := s.Stat(d); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk.Set(time.Unix(tc.at, 0))
			if err := tc.access(tc.d); err != nil {
				t.Fatal(err)
			}
			if at, ok := s.LastAccess(tc.d); !ok || at.Unix() != tc.at {
				t.Errorf("pending LastAccess = %v, %v; want %d", at, ok, tc.at)
			}
			if err := s.flushAccess(); err != nil {
				t.Fatal(err)
			}
			if _, pending := s.access.get(tc.d); pending {
				t.Errorf("the access is still pending after a flush")
			}
			if m, ok := s.readObjectMeta(tc.d); !ok || m.LastAccess != tc.at*int64(time.Second) {
				t.Errorf("flushed record = %+v, %v; want last access %d", m, ok, tc.at)
			}
		})
	}

	// Close writes what is pending.
	clk.Set(time.Unix(9000, 0))
	if _, err := s.Stat(ds); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	if at, ok := s.LastAccess(ds); !ok || at.Unix() != 9000 {
		t.Errorf("LastAccess after restart = %v, %v; want 9000", at, ok)
	}
	if m, ok := s.readObjectMeta(dc); !ok || m.Size != int64(len(copied)) {
		t.Errorf("record of the file without metadata = %+v, %v", m, ok)
	}
}

func TestInspectIsNotAUse(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	s := openTestWith(t, Options{Dir: t.TempDir(), Now: clk.Now})
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	if err := s.Put(d, manifestType, data); err != nil {
		t.Fatal(err)
	}
	clk.Set(time.Unix(5000, 0))
	for _, fresh := range []bool{false, true} {
		if fresh {
			s.index.Clear() // from disk this time
		}
		if obj, err := s.Inspect(d); err != nil || obj.Size != int64(len(data)) {
			t.Fatalf("Inspect = %+v, %v", obj, err)
		}
		if got, _, err := s.InspectContent(d, 100); err != nil || string(got) != string(data) {
			t.Fatalf("InspectContent = %q, %v", got, err)
		}
		if at, ok := s.LastAccess(d); !ok || !at.Equal(time.Unix(1000, 0)) {
			t.Errorf("LastAccess after inspecting (index cleared %v) = %v, want the time of the Put", fresh, at)
		}
	}
}

func TestLastAccessOfOlderRecords(t *testing.T) {
	s := openTest(t, t.TempDir())
	tests := []struct {
		name   string
		record string
		want   time.Time
	}{
		{"seconds, as records used to keep it", `{"size":1,"last_access":1234}`, time.Unix(1234, 0)},
		{"nanoseconds", `{"size":1,"last_access_ns":1234000000005}`, time.Unix(1234, 5)},
		{"both: nanoseconds win", `{"size":1,"last_access":1,"last_access_ns":2000000000}`, time.Unix(2, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := digest.FromString(tc.name)
			err := s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(objectsBucket).Put([]byte(d), []byte(tc.record))
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := s.LastAccess(d); !ok || !got.Equal(tc.want) {
				t.Errorf("LastAccess = %v, %v; want %v", got, ok, tc.want)
			}
		})
	}
}
