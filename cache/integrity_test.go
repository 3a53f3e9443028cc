package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// damage is a way content at rest goes bad.
type damage func(t *testing.T, path string)

// middle stands for the offset of the middle byte in flipByte.
const middle = 1 << 62

// flipByte flips one bit of the byte at off (from the end when negative,
// the middle one for middle).
func flipByte(off int64) damage {
	return func(t *testing.T, path string) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		at := off
		switch {
		case at == middle:
			at = int64(len(data) / 2)
		case at < 0:
			at += int64(len(data))
		}
		data[at] ^= 0x01
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// truncate cuts the file to n bytes.
func truncate(n int64) damage {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
	}
}

// appendBytes adds bytes at the end of the file.
func appendBytes(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte("junk"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// storedFile is the path of d's stored content in s.
func storedFile(s *Store, d digest.Digest) string {
	return filepath.Join(s.Dir(), "blobs", string(d.Algorithm()), d.Encoded())
}

// putObject stores data with mediaType and returns its digest.
func putObject(t *testing.T, s *Store, mediaType string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	if err := s.Put(d, mediaType, data); err != nil {
		t.Fatal(err)
	}
	return d
}

// testBlob returns n bytes of content that differs per seed.
func testBlob(seed byte, n int) []byte {
	b := bytes.Repeat([]byte{seed}, n)
	for i := range b {
		b[i] += byte(i * 7)
	}
	return b
}

// integrityCases are damages, and whether each makes an object corrupt.
var integrityCases = []struct {
	name    string
	damage  damage
	corrupt bool
}{
	{"intact", func(*testing.T, string) {}, false},
	{"first byte flipped", flipByte(0), true},
	{"middle byte flipped", flipByte(middle), true},
	{"last byte flipped", flipByte(-1), true},
	{"truncated", truncate(100), true},
	{"emptied", truncate(0), true},
	{"bytes appended", appendBytes, true},
}

func TestScrubFindsDamage(t *testing.T) {
	for _, tc := range integrityCases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestWith(t, Options{Dir: t.TempDir(), ScrubInterval: -1})
			good := putObject(t, s, "application/octet-stream", testBlob(1, 100_000))
			victim := putObject(t, s, "application/octet-stream", testBlob(2, 100_000))
			tc.damage(t, storedFile(s, victim))
			if err := s.scrubPass(context.Background(), -1); err != nil {
				t.Fatalf("scrubPass: %v", err)
			}
			_, err := s.Stat(victim)
			if gone := errors.Is(err, ErrNotFound); gone != tc.corrupt {
				t.Errorf("after the scrub, Stat(damaged) = %v; want removed %v", err, tc.corrupt)
			}
			if _, err := s.Stat(good); err != nil {
				t.Errorf("the scrub removed an intact object: %v", err)
			}
			st := s.IntegrityStats()
			if want := int64(btoi(tc.corrupt)); st.CorruptObjects != want {
				t.Errorf("CorruptObjects = %d, want %d", st.CorruptObjects, want)
			}
			if st.Scrub.Passes != 1 || st.Scrub.CheckedObjects != 2 {
				t.Errorf("scrub figures %+v, want 1 pass over 2 objects", st.Scrub)
			}
			if !s.Verified(good) || s.Verified(victim) != !tc.corrupt {
				t.Errorf("Verified(good) = %v, Verified(damaged) = %v", s.Verified(good), s.Verified(victim))
			}
			if st := s.Stats(); st.Objects != int64(2-btoi(tc.corrupt)) {
				t.Errorf("Objects = %d after the scrub", st.Objects)
			}
			rec, _ := s.readScrubRecord()
			if rec.Cursor != "" || rec.PassFinished.IsZero() {
				t.Errorf("scrub record after a pass: %+v", rec)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestVerify(t *testing.T) {
	for _, tc := range integrityCases {
		for _, repair := range []bool{false, true} {
			name := tc.name + "/report"
			if repair {
				name = tc.name + "/repair"
			}
			t.Run(name, func(t *testing.T) {
				s := openTestWith(t, Options{Dir: t.TempDir(), ScrubInterval: -1})
				good := putObject(t, s, manifestType, []byte(`{"schemaVersion":2}`))
				victim := putObject(t, s, "application/octet-stream", testBlob(3, 100_000))
				tc.damage(t, storedFile(s, victim))
				rep, err := s.Verify(context.Background(), VerifyOptions{Repair: repair})
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if rep.Objects != 2 {
					t.Errorf("checked %d objects, want 2", rep.Objects)
				}
				var want []CorruptObject
				if tc.corrupt {
					fi, _ := os.Stat(storedFile(s, victim))
					size := int64(0)
					if fi != nil {
						size = fi.Size()
					} else if repair {
						size = -1 // unknown here: compare the rest only
					}
					want = []CorruptObject{{Digest: victim, Size: size, MediaType: "application/octet-stream", Removed: repair}}
				}
				if len(rep.Corrupt) != len(want) {
					t.Fatalf("corrupt objects %+v, want %+v", rep.Corrupt, want)
				}
				for i := range want {
					got := rep.Corrupt[i]
					if want[i].Size == -1 {
						want[i].Size = got.Size
					}
					if got != want[i] {
						t.Errorf("corrupt object %+v, want %+v", got, want[i])
					}
				}
				_, err = os.Stat(storedFile(s, victim))
				if removed := errors.Is(err, os.ErrNotExist); removed != (tc.corrupt && repair) {
					t.Errorf("damaged file removed: %v, want %v", removed, tc.corrupt && repair)
				}
				if s.Verified(victim) == tc.corrupt || !s.Verified(good) {
					t.Errorf("Verified(damaged) = %v, Verified(good) = %v", s.Verified(victim), s.Verified(good))
				}
				if got, want := s.IntegrityStats().CorruptObjects, int64(btoi(tc.corrupt && repair)); got != want {
					t.Errorf("CorruptObjects = %d, want %d", got, want)
				}
			})
		}
	}
}

func TestManifestCheckedOnEveryDiskRead(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)
	for _, tc := range integrityCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(Options{Dir: dir, ScrubInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			d := putObject(t, s, manifestType, body)
			s.index.Wait()
			tc.damage(t, storedFile(s, d))
			// While the hot index holds the verified bytes, they are what
			// is served.
			if got, _, err := s.ReadAll(d, 1<<20); err != nil || !bytes.Equal(got, body) {
				t.Errorf("ReadAll from the hot index = %q, %v", got, err)
			}
			// Once the index dropped them, the disk is read and checked.
			s.index.Clear()
			got, _, err := s.ReadAll(d, 1<<20)
			if tc.corrupt != errors.Is(err, ErrNotFound) || !tc.corrupt && !bytes.Equal(got, body) {
				t.Errorf("ReadAll after the index dropped it = %q, %v; want not found: %v", got, err, tc.corrupt)
			}
			if tc.corrupt {
				// Damaged again for the read after the restart.
				if err := s.Put(d, manifestType, body); err != nil {
					t.Fatal(err)
				}
				tc.damage(t, storedFile(s, d))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openTestWith(t, Options{Dir: dir, ScrubInterval: -1})
			got, _, err = s.ReadAll(d, 1<<20)
			if tc.corrupt {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("ReadAll of a damaged manifest = %q, %v; want ErrNotFound", got, err)
				}
				if _, err := os.Stat(storedFile(s, d)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the damaged manifest is still stored: %v", err)
				}
				if n := s.IntegrityStats().CorruptObjects; n != 1 {
					t.Errorf("CorruptObjects = %d, want 1", n)
				}
				// Stored again from good bytes, it is served.
				if err := s.Put(d, manifestType, body); err != nil {
					t.Fatal(err)
				}
				s.index.Clear()
				got, _, err = s.ReadAll(d, 1<<20)
			}
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("ReadAll = %q, %v; want the manifest", got, err)
			}
		})
	}
}

func TestCheckRead(t *testing.T) {
	blob := testBlob(4, 50_000)
	d := digest.FromBytes(blob)
	tests := []struct {
		name string
		// got and n are what the reader reports; nil got means the digest
		// of the bytes it read.
		damage  damage
		replace bool // a fill stored d again before the verdict
		wantErr bool
		stored  bool // d still stored after the verdict
	}{
		{name: "intact", damage: func(*testing.T, string) {}, stored: true},
		{name: "flipped", damage: flipByte(10), wantErr: true},
		{name: "truncated", damage: truncate(10), wantErr: true},
		{name: "flipped, replaced meanwhile", damage: flipByte(10), replace: true, wantErr: true, stored: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestWith(t, Options{Dir: dir, ScrubInterval: -1})
			putObject(t, s, "application/octet-stream", blob)
			tc.damage(t, storedFile(s, d))
			s.forgetVerified(d) // as after a restart
			r, err := s.Open(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			h := digest.Canonical.Digester()
			n, err := io.Copy(h.Hash(), r.File())
			if err != nil {
				t.Fatal(err)
			}
			if tc.replace {
				// The file is replaced by a rename, as a fill stores.
				tmp := filepath.Join(dir, "replacement")
				if err := os.WriteFile(tmp, blob, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, storedFile(s, d)); err != nil {
					t.Fatal(err)
				}
			}
			err = s.CheckRead(d, r.File(), h.Digest(), n)
			if gotErr := err != nil; gotErr != tc.wantErr || gotErr && !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("CheckRead = %v, want error %v", err, tc.wantErr)
			}
			if _, err := os.Stat(storedFile(s, d)); (err == nil) != tc.stored {
				t.Errorf("stored after the verdict: %v, want %v", err == nil, tc.stored)
			}
			if got := s.Condemned(d, r.File()); got != tc.wantErr {
				t.Errorf("Condemned(reader's file) = %v, want %v", got, tc.wantErr)
			}
			if got := s.Verified(d); got != !tc.wantErr {
				t.Errorf("Verified = %v, want %v", got, !tc.wantErr)
			}
			if tc.replace {
				// The new file is not the condemned one.
				f, err := os.Open(storedFile(s, d))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if s.Condemned(d, f) {
					t.Errorf("the replacement file counts as condemned")
				}
			}
		})
	}
}

func TestNextScrub(t *testing.T) {
	opened := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	last := opened.Add(-48 * time.Hour)
	tests := []struct {
		name     string
		rec      scrubRecord
		interval time.Duration
		want     time.Time
	}{
		{"never scrubbed, long interval", scrubRecord{}, 7 * 24 * time.Hour, opened.Add(time.Hour)},
		{"never scrubbed, short interval", scrubRecord{}, time.Minute, opened.Add(time.Minute)},
		{"pass in progress resumes at once", scrubRecord{Cursor: "sha256:ab", PassStarted: last}, 7 * 24 * time.Hour, opened},
		{"an interval after the last start", scrubRecord{PassStarted: last, PassFinished: last.Add(time.Hour)}, 7 * 24 * time.Hour, last.Add(7 * 24 * time.Hour)},
		{"overdue", scrubRecord{PassStarted: last, PassFinished: last}, 24 * time.Hour, last.Add(24 * time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextScrub(tc.rec, opened, tc.interval); !got.Equal(tc.want) {
				t.Errorf("nextScrub(%+v, %v) = %v, want %v", tc.rec, tc.interval, got, tc.want)
			}
		})
	}
}

func TestScrubSchedule(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: t0}
	dir := t.TempDir()
	s := openTestWith(t, Options{Dir: dir, Now: clk.Now, ScrubInterval: 24 * time.Hour, ScrubRate: -1})
	victim := putObject(t, s, "application/octet-stream", testBlob(5, 10_000))
	flipByte(5)(t, storedFile(s, victim))
	passes := func() int64 { return s.IntegrityStats().Scrub.Passes }

	// Nothing before the first pass is due (an hour after the start).
	clk.Set(t0.Add(59 * time.Minute))
	s.wakeScrub()
	if _, err := s.Stat(victim); err != nil || passes() != 0 {
		t.Fatalf("a pass ran before it was due: %v, %d passes", err, passes())
	}
	clk.Set(t0.Add(time.Hour))
	s.wakeScrub()
	waitFor(t, "the first pass", func() bool { return passes() == 1 })
	if _, err := s.Stat(victim); !errors.Is(err, ErrNotFound) {
		t.Errorf("the first pass left the damaged object: %v", err)
	}
	// The next is due a day after the first started.
	clk.Set(t0.Add(24 * time.Hour))
	s.wakeScrub()
	clk.Set(t0.Add(25 * time.Hour))
	s.wakeScrub()
	waitFor(t, "the second pass", func() bool { return passes() == 2 })
	if st := s.IntegrityStats(); st.CorruptObjects != 1 || !st.Scrub.Enabled || st.Scrub.Interval != 24*time.Hour {
		t.Errorf("integrity figures %+v", st)
	}
}

func TestScrubResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, ScrubInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var ds []digest.Digest
	for i := range 5 {
		ds = append(ds, putObject(t, s, "application/octet-stream", testBlob(byte(10+i), 1000)))
	}
	all, err := s.objectsAfter("", 10)
	if err != nil || len(all) != 5 {
		t.Fatalf("objectsAfter = %v, %v", all, err)
	}
	// A pass stopped after the third object; the first is damaged, the
	// last too.
	start := time.Now().Add(-time.Hour)
	if err := s.writeScrubRecord(scrubRecord{Cursor: all[2], PassStarted: start}); err != nil {
		t.Fatal(err)
	}
	flipByte(0)(t, storedFile(s, all[0]))
	flipByte(0)(t, storedFile(s, all[4]))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestWith(t, Options{Dir: dir, ScrubInterval: 24 * time.Hour, ScrubRate: -1})
	waitFor(t, "the resumed pass", func() bool { return s.IntegrityStats().Scrub.Passes == 1 })
	if st := s.IntegrityStats().Scrub; st.CheckedObjects != 2 {
		t.Errorf("the resumed pass checked %d objects, want the 2 after the cursor", st.CheckedObjects)
	}
	if _, err := s.Stat(all[4]); !errors.Is(err, ErrNotFound) {
		t.Errorf("the resumed pass left the damaged object after its cursor: %v", err)
	}
	if _, err := s.Stat(all[0]); err != nil {
		t.Errorf("the resumed pass went over objects before its cursor: %v", err)
	}
	rec, _ := s.readScrubRecord()
	if !rec.PassStarted.Equal(start) || rec.Cursor != "" {
		t.Errorf("record after the resumed pass: %+v", rec)
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
