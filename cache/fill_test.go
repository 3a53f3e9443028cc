package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// content returns n pseudo-random bytes and their digest.
func content(n int) ([]byte, digest.Digest) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n)})
	_, _ = r.Read(b)
	return b, digest.FromBytes(b)
}

// fetchOf returns a FetchFunc serving body with a declared size, counting calls.
func fetchOf(body []byte, size int64, calls *atomic.Int64) FetchFunc {
	return func(context.Context) (Source, error) {
		calls.Add(1)
		return Source{Body: io.NopCloser(bytes.NewReader(body)), Size: size}, nil
	}
}

func TestFillOneFetchForManyReaders(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(3 << 20)
	pr, pw := io.Pipe()
	var calls atomic.Int64
	fetch := func(context.Context) (Source, error) {
		calls.Add(1)
		return Source{Body: pr, Size: int64(len(data))}, nil
	}
	const readers = 20
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	started := make(chan struct{}, readers)
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Fill(t.Context(), d, fetch)
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			started <- struct{}{}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("read %d bytes, %v", len(got), err)
			}
		}()
	}
	for i := 0; i < readers; i++ {
		<-started // every reader joined before any byte arrived
	}
	if _, err := pw.Write(data); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("fetch called %d times, want 1", n)
	}
	if _, err := s.Stat(d); err != nil {
		t.Errorf("filled object not stored: %v", err)
	}
}

func TestFillStreamsBeforeTheEnd(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(1 << 20)
	pr, pw := io.Pipe()
	r, err := s.Fill(t.Context(), d, func(context.Context) (Source, error) {
		return Source{Body: pr, Size: int64(len(data))}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	half := len(data) / 2
	go func() { _, _ = pw.Write(data[:half]) }()
	got := make([]byte, half)
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, data[:half]) {
		t.Fatalf("the first half did not arrive before the rest was sent: %v", err)
	}
	go func() { _, _ = pw.Write(data[half:]); pw.Close() }()
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[half:]) {
		t.Errorf("second half: %d bytes, %v", len(rest), err)
	}
}

func TestFillSurvivesItsFirstClient(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(1 << 20)
	pr, pw := io.Pipe()
	var calls atomic.Int64
	fetch := func(context.Context) (Source, error) {
		calls.Add(1)
		return Source{Body: pr, Size: int64(len(data))}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	first, err := s.Fill(ctx, d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := first.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v", err)
	}
	first.Close()
	second, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	go func() { _, _ = pw.Write(data); pw.Close() }()
	got, err := io.ReadAll(second)
	if err != nil || !bytes.Equal(got, data) || calls.Load() != 1 {
		t.Errorf("second reader: %d bytes, %v, fetches %d", len(got), err, calls.Load())
	}
	if err := second.Wait(t.Context()); err != nil {
		t.Errorf("verdict: %v", err)
	}
	if _, err := s.Stat(d); err != nil {
		t.Errorf("object not stored after its first client left: %v", err)
	}
}

func TestFillRejectsBadBodies(t *testing.T) {
	data, d := content(64 << 10)
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)/2] ^= 0xff
	tests := []struct {
		name    string
		body    []byte
		size    int64
		wantErr error
	}{
		{"corrupted byte", corrupt, int64(len(data)), ErrDigestMismatch},
		{"truncated", data[:len(data)/2], int64(len(data)), ErrSizeMismatch},
		{"oversize", append(bytes.Clone(data), 'x'), int64(len(data)), ErrSizeMismatch},
		{"unknown size, corrupted", corrupt, -1, ErrDigestMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			var calls atomic.Int64
			r, err := s.Fill(t.Context(), d, fetchOf(tc.body, tc.size, &calls))
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(r)
			r.Close()
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("reading a bad body: %v, want %v (never a clean EOF)", err, tc.wantErr)
			}
			if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
				t.Errorf("bad content became visible: %v", err)
			}
			// the next fill fetches again and succeeds
			r, err = s.Fill(t.Context(), d, fetchOf(data, int64(len(data)), &calls))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) || calls.Load() != 2 {
				t.Errorf("refill: %d bytes, %v, fetches %d", len(got), err, calls.Load())
			}
		})
	}
}

func TestFillFetchErrorReachesEveryCaller(t *testing.T) {
	s := openTest(t, t.TempDir())
	_, d := content(10)
	sentinel := errors.New("upstream says 404")
	release := make(chan struct{})
	fetch := func(context.Context) (Source, error) {
		<-release
		return Source{}, fmt.Errorf("wrapped: %w", sentinel)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Fill(t.Context(), d, fetch)
			errs <- err
		}()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, sentinel) {
			t.Errorf("Fill = %v, want the fetch error", err)
		}
	}
}

func TestFillSeekAndUnknownSize(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(100_000)
	var calls atomic.Int64
	r, err := s.Fill(t.Context(), d, fetchOf(data, int64(len(data)), &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if end, err := r.Seek(0, io.SeekEnd); err != nil || end != int64(len(data)) {
		t.Fatalf("Seek end = %d, %v", end, err)
	}
	if _, err := r.Seek(90_000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data[90_000:]) {
		t.Errorf("read after seek: %d bytes, %v", len(got), err)
	}

	data2, d2 := content(5000)
	r2, err := s.Fill(t.Context(), d2, fetchOf(data2, -1, &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Size() != -1 {
		t.Errorf("Size() = %d, want -1", r2.Size())
	}
	if _, err := r2.Seek(0, io.SeekEnd); err == nil {
		t.Errorf("Seek from the end of an unknown size succeeded")
	}
	if got, err := io.ReadAll(r2); err != nil || !bytes.Equal(got, data2) {
		t.Errorf("unknown size: %d bytes, %v", len(got), err)
	}
	// a stored object comes back complete, with its file
	r3, err := s.Fill(t.Context(), d2, fetchOf(nil, 0, &calls))
	if err != nil || !r3.Complete() || r3.File() == nil {
		t.Fatalf("Fill of a stored object: complete %v, %v", r3 != nil && r3.Complete(), err)
	}
	r3.Close()
}

func TestCloseDuringFill(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, d := content(1000)
	fetch := func(ctx context.Context) (Source, error) {
		pr, pw := io.Pipe()
		go func() { <-ctx.Done(); pw.CloseWithError(ctx.Err()) }()
		return Source{Body: pr, Size: 1000}, nil
	}
	r, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if fills, readers := s.FillStats(); fills != 1 || readers != 1 {
		t.Errorf("FillStats = %d, %d; want 1, 1", fills, readers)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, ErrClosed) {
		t.Errorf("read after Close: %v, want ErrClosed", err)
	}
}
