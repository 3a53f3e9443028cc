package cache

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestSeekOnGrowingReader(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(200_000)
	var calls atomic.Int64
	fetch, pw := pipeFetch(int64(len(data)), &calls)
	r, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := pw.Write(data[:50_000]); err != nil { // the pipe hands over every byte before returning
		t.Fatal(err)
	}
	// Within the written part.
	if pos, err := r.Seek(10_000, io.SeekStart); err != nil || pos != 10_000 {
		t.Fatalf("Seek = %d, %v", pos, err)
	}
	got := make([]byte, 1000)
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, data[10_000:11_000]) {
		t.Errorf("partial read after Seek: %v", err)
	}
	if pos, err := r.Seek(0, io.SeekCurrent); err != nil || pos != 11_000 {
		t.Errorf("Seek(0, current) = %d, %v", pos, err)
	}
	// Beyond it: the read waits for the bytes.
	if pos, err := r.Seek(-20_000, io.SeekEnd); err != nil || pos != 180_000 {
		t.Fatalf("Seek from the end = %d, %v", pos, err)
	}
	go func() { _, _ = pw.Write(data[50_000:]); pw.Close() }()
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, data[180_000:]) {
		t.Errorf("read beyond the written part: %d bytes, %v", len(tail), err)
	}
}

func TestReaderWaitsForTheVerdict(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(100_000)
	var calls atomic.Int64
	fetch, pw := pipeFetch(int64(len(data)), &calls)
	r, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := pw.Write(data); err != nil { // every byte, but no end yet
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, len(data))); err != nil {
		t.Fatal(err)
	}
	cut := errors.New("cut after the last byte")
	done := make(chan error, 1)
	go func() { _, err := r.Read(make([]byte, 10)); done <- err }()
	pw.CloseWithError(cut)
	if err := <-done; !errors.Is(err, cut) {
		t.Errorf("Read at the end of the written bytes = %v, want the fill's failure (not io.EOF)", err)
	}
}

func TestSeek(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(1000)
	if err := s.Put(d, "", data); err != nil {
		t.Fatal(err)
	}
	_, pending := content(1500)
	unknown, du := content(2000)
	tests := []struct {
		name    string
		r       func(t *testing.T) *Reader
		offset  int64
		whence  int
		want    int64
		wantErr bool
	}{
		{"start", completeFill(s, d, data, 1000), 10, io.SeekStart, 10, false},
		{"end", completeFill(s, d, data, 1000), -10, io.SeekEnd, 990, false},
		{"past the end", completeFill(s, d, data, 1000), 10, io.SeekEnd, 1010, false},
		{"negative", completeFill(s, d, data, 1000), -1, io.SeekStart, 0, true},
		{"bad whence", completeFill(s, d, data, 1000), 0, 7, 0, true},
		{"end of an unknown size while filling", pendingFill(s, pending), 0, io.SeekEnd, 0, true},
		{"end of an unknown size once verified", verifiedFill(s, du, unknown), 0, io.SeekEnd, 2000, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r(t)
			defer r.Close()
			pos, err := r.Seek(tc.offset, tc.whence)
			if (err != nil) != tc.wantErr || (err == nil && pos != tc.want) {
				t.Errorf("Seek(%d, %d) = %d, %v; want %d, error %v", tc.offset, tc.whence, pos, err, tc.want, tc.wantErr)
			}
		})
	}
}

// completeFill returns a Reader of a stored object.
func completeFill(s *Store, d digest.Digest, data []byte, size int64) func(t *testing.T) *Reader {
	return func(t *testing.T) *Reader {
		r, err := s.Fill(t.Context(), d, fetchOf(data, size, nil))
		if err != nil || !r.Complete() {
			t.Fatalf("Fill = %v", err)
		}
		return r
	}
}

// pendingFill returns a Reader of a fill of unknown size that has not ended.
func pendingFill(s *Store, d digest.Digest) func(t *testing.T) *Reader {
	return func(t *testing.T) *Reader {
		var calls atomic.Int64
		fetch, pw := pipeFetch(-1, &calls)
		t.Cleanup(func() { pw.CloseWithError(errors.New("test over")) })
		r, err := s.Fill(t.Context(), d, fetch)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

// verifiedFill returns a Reader of a fill of unknown size that verified.
func verifiedFill(s *Store, d digest.Digest, data []byte) func(t *testing.T) *Reader {
	return func(t *testing.T) *Reader {
		var calls atomic.Int64
		fetch, pw := pipeFetch(-1, &calls)
		r, err := s.Fill(t.Context(), d, fetch)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = pw.Write(data); pw.Close() }()
		if err := r.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		// Once verified, the reader knows its size and has its file.
		if r.Size() != int64(len(data)) || !r.Complete() || r.File() == nil {
			t.Fatalf("a verified fill of unknown size: size %d, complete %v", r.Size(), r.Complete())
		}
		return r
	}
}

func TestReadAfterClose(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(100)
	r, err := s.Fill(t.Context(), d, fetchOf(data, 100, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := r.Read(make([]byte, 10)); err == nil {
		t.Error("Read after Close succeeded")
	}
}

// plainWriter hides a writer's ReadFrom.
type plainWriter struct{ w io.Writer }

func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

func TestReadyAndCopyTo(t *testing.T) {
	data, d := content(256 << 10)
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)-1] ^= 0xff
	tests := []struct {
		name      string
		body      []byte
		readerFor bool // copy to an io.ReaderFrom (the sendfile path)
		wantErr   error
	}{
		{"to a ReaderFrom", data, true, nil},
		{"to a plain writer", data, false, nil},
		{"bad content", corrupt, true, ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			var calls atomic.Int64
			fetch, pw := pipeFetch(int64(len(data)), &calls)
			r, err := s.Fill(t.Context(), d, fetch)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var got bytes.Buffer
			var w io.Writer = &got
			if !tc.readerFor {
				w = plainWriter{&got}
			}
			half := len(data) / 2
			go func() { _, _ = pw.Write(tc.body[:half]) }()
			for got.Len() < half {
				n, err := r.Ready()
				if err != nil {
					t.Fatalf("Ready mid-fill: %v", err)
				}
				if c, err := r.CopyTo(w, n); err != nil || c != n {
					t.Fatalf("CopyTo(%d) = %d, %v", n, c, err)
				}
			}
			go func() { _, _ = pw.Write(tc.body[half:]); pw.Close() }()
			for {
				n, err := r.Ready()
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, tc.wantErr) {
						t.Errorf("Ready = %v, want %v", err, tc.wantErr)
					}
					if tc.wantErr == nil && errors.Is(err, io.EOF) && !bytes.Equal(got.Bytes(), data) {
						t.Errorf("copied %d bytes that differ from the content", got.Len())
					}
					if tc.wantErr != nil && errors.Is(err, io.EOF) {
						t.Error("Ready reported the end of bad content")
					}
					return
				}
				if _, err := r.CopyTo(w, n); err != nil {
					t.Fatalf("CopyTo: %v", err)
				}
			}
		})
	}
}
