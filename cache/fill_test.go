package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// content returns n pseudo-random bytes and their digest.
func content(n int) ([]byte, digest.Digest) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	_, _ = r.Read(b)
	return b, digest.FromBytes(b)
}

// fetchOf returns a FetchFunc serving body with a declared size, counting
// its calls in calls when it is not nil.
func fetchOf(body []byte, size int64, calls *atomic.Int64) FetchFunc {
	return func(context.Context, int64) (Source, error) {
		if calls != nil {
			calls.Add(1)
		}
		return Source{Body: io.NopCloser(bytes.NewReader(body)), Size: size, MediaType: "application/octet-stream"}, nil
	}
}

// pipeFetch returns a FetchFunc whose body is written through the returned
// pipe writer, counting its calls.
func pipeFetch(size int64, calls *atomic.Int64) (FetchFunc, *io.PipeWriter) {
	pr, pw := io.Pipe()
	return func(context.Context, int64) (Source, error) {
		calls.Add(1)
		return Source{Body: pr, Size: size}, nil
	}, pw
}

// waitReaders spins until n readers are attached to fills.
func waitReaders(s *Store, n int) {
	for {
		if _, readers := s.FillStats(); readers >= n {
			return
		}
		runtime.Gosched()
	}
}

func TestFillOneFetchForManyReaders(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(3 << 20)
	var calls atomic.Int64
	fetch, pw := pipeFetch(int64(len(data)), &calls)
	const readers = 20
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	joined := make(chan struct{}, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Fill(t.Context(), d, fetch)
			if err != nil {
				errs <- err
				joined <- struct{}{}
				return
			}
			defer r.Close()
			joined <- struct{}{}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("read %d bytes, %v", len(got), err)
			}
		}()
	}
	for range readers {
		<-joined // every caller joined before any byte arrived
	}
	if fills, n := s.FillStats(); fills != 1 || n != readers {
		t.Errorf("FillStats = %d, %d; want 1, %d", fills, n, readers)
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
	if obj, err := s.Stat(d); err != nil || obj.Size != int64(len(data)) {
		t.Errorf("filled object not stored: %+v, %v", obj, err)
	}
}

func TestFillStreamsBeforeTheEnd(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(1 << 20)
	var calls atomic.Int64
	fetch, pw := pipeFetch(int64(len(data)), &calls)
	r, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Complete() || r.File() != nil || r.Size() != int64(len(data)) {
		t.Errorf("a reader of a fill: complete %v, file %v, size %d", r.Complete(), r.File(), r.Size())
	}
	half := len(data) / 2
	wrote := make(chan error, 1)
	go func() { _, err := pw.Write(data[:half]); wrote <- err }()
	got := make([]byte, half)
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, data[:half]) {
		t.Fatalf("the first half did not arrive before the rest was sent: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat while filling = %v, want ErrNotFound", err)
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
	var calls atomic.Int64
	fetch, pw := pipeFetch(int64(len(data)), &calls)
	ctx, cancel := context.WithCancel(t.Context())
	first, err := s.Fill(ctx, d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	go func() { _, _ = pw.Write(data[:half]) }()
	if _, err := io.ReadFull(first, make([]byte, half)); err != nil {
		t.Fatal(err)
	}
	cancel() // the first client leaves mid-fill
	if _, err := first.Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
	first.Close()
	second, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	go func() { _, _ = pw.Write(data[half:]); pw.Close() }()
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

func TestFillCompletesWithoutClients(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(300_000)
	var calls atomic.Int64
	fetch, pw := pipeFetch(int64(len(data)), &calls)
	r, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // every client gone before a byte arrived
	if fills, readers := s.FillStats(); fills != 1 || readers != 0 {
		t.Errorf("FillStats without clients = %d, %d; want 1, 0", fills, readers)
	}
	if _, err := pw.Write(data); err != nil {
		t.Fatal(err) // the fill still reads the body
	}
	pw.Close()
	// A later client joins the fill or finds the stored object, without
	// a second fetch.
	r, err = s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) || calls.Load() != 1 {
		t.Errorf("after the clients left: %d bytes, %v, fetches %d", len(got), err, calls.Load())
	}
	if _, err := s.Stat(d); err != nil {
		t.Errorf("object not stored: %v", err)
	}
}

func TestFillRejectsBadBodies(t *testing.T) {
	data, d := content(64 << 10)
	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)/2] ^= 0xff
	upstreamErr := errors.New("connection reset")
	tests := []struct {
		name    string
		body    []byte
		size    int64
		end     error // how the body ends; nil is a clean EOF
		wantErr error
		// fetches is how many times the fill asked for the body: a body
		// that broke is asked for again until the attempts without
		// progress are spent (the pipe gives nothing more).
		fetches int64
	}{
		{"corrupted byte", corrupt, int64(len(data)), nil, ErrDigestMismatch, 1},
		{"truncated", data[:len(data)/2], int64(len(data)), nil, ErrSizeMismatch, 1 + DefaultFillRetries},
		{"oversize", append(bytes.Clone(data), 'x'), int64(len(data)), nil, ErrSizeMismatch, 1},
		{"unknown size, corrupted", corrupt, -1, nil, ErrDigestMismatch, 1},
		{"unknown size, truncated", data[:100], -1, nil, ErrDigestMismatch, 1},
		{"upstream read error", data[:1000], int64(len(data)), upstreamErr, upstreamErr, 1 + DefaultFillRetries},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			var calls atomic.Int64
			fetch, pw := pipeFetch(tc.size, &calls)
			const readers = 3
			rs := make([]*Reader, readers)
			for i := range rs {
				r, err := s.Fill(t.Context(), d, fetch)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				rs[i] = r
			}
			errs := make(chan error, readers)
			for _, r := range rs {
				go func() { _, err := io.ReadAll(r); errs <- err }()
			}
			go func() {
				_, _ = pw.Write(tc.body)
				pw.CloseWithError(tc.end)
			}()
			for range readers {
				if err := <-errs; !errors.Is(err, tc.wantErr) {
					t.Errorf("reading a bad body: %v, want %v (never a clean end)", err, tc.wantErr)
				}
			}
			if err := rs[0].Wait(t.Context()); !errors.Is(err, tc.wantErr) {
				t.Errorf("Wait = %v, want %v", err, tc.wantErr)
			}
			if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
				t.Errorf("bad content became visible: %v", err)
			}
			if _, ok := s.readObjectMeta(d); ok {
				t.Errorf("bad content left metadata")
			}
			// The next fill fetches again and succeeds.
			r, err := s.Fill(t.Context(), d, fetchOf(data, int64(len(data)), &calls))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) || calls.Load() != tc.fetches+1 {
				t.Errorf("refill: %d bytes, %v, fetches %d", len(got), err, calls.Load())
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if names := dirEntries(t, s.ingestDir); len(names) != 0 {
				t.Errorf("ingest/ holds %v after the fills ended", names)
			}
		})
	}
}

// statusError stands for an upstream's typed error.
type statusError struct{ status int }

func (e *statusError) Error() string { return fmt.Sprintf("upstream answered %d", e.status) }

func TestFillFetchErrorReachesEveryCaller(t *testing.T) {
	s := openTest(t, t.TempDir())
	_, d := content(10)
	release := make(chan struct{})
	var calls atomic.Int64
	fetch := func(context.Context, int64) (Source, error) {
		calls.Add(1)
		<-release
		return Source{}, fmt.Errorf("fetching: %w", &statusError{status: 429})
	}
	const callers = 5
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := s.Fill(t.Context(), d, fetch)
			errs <- err
		}()
	}
	waitReaders(s, callers) // all joined the one fill, which waits on fetch
	close(release)
	for range callers {
		var se *statusError
		if err := <-errs; !errors.As(err, &se) || se.status != 429 {
			t.Errorf("Fill = %v, want the fetch error", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("fetch called %d times, want 1", n)
	}
	if _, err := s.Stat(d); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after a failed fetch = %v", err)
	}
}

func TestFillCallerContext(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(1000)
	release := make(chan struct{})
	fetch := func(context.Context, int64) (Source, error) {
		<-release
		return Source{Body: io.NopCloser(bytes.NewReader(data)), Size: int64(len(data))}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 1)
	go func() {
		_, err := s.Fill(ctx, d, fetch)
		errs <- err
	}()
	waitReaders(s, 1)
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("Fill with a cancelled context = %v", err)
	}
	close(release)
	// The fill went on without its caller.
	r, err := s.Fill(t.Context(), d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read %d bytes, %v", len(got), err)
	}
}

func TestFillNoBody(t *testing.T) {
	s := openTest(t, t.TempDir())
	_, d := content(10)
	_, err := s.Fill(t.Context(), d, func(context.Context, int64) (Source, error) { return Source{Size: 10}, nil })
	if err == nil {
		t.Error("Fill with a nil body succeeded")
	}
}

func TestFillOfStoredObject(t *testing.T) {
	s := openTest(t, t.TempDir())
	data, d := content(5000)
	if err := s.Put(d, manifestType, data); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	r, err := s.Fill(t.Context(), d, fetchOf(nil, 0, &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Complete() || r.File() == nil || r.Size() != int64(len(data)) || r.MediaType() != manifestType || calls.Load() != 0 {
		t.Errorf("Fill of a stored object: complete %v, file %v, size %d, type %q, fetches %d",
			r.Complete(), r.File(), r.Size(), r.MediaType(), calls.Load())
	}
	if err := r.Wait(t.Context()); err != nil {
		t.Errorf("Wait = %v", err)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read %d bytes, %v", len(got), err)
	}
}

func TestCloseDuringFill(t *testing.T) {
	tests := []struct {
		name  string
		fetch func(ctx context.Context, pw *io.PipeWriter, pr *io.PipeReader) (Source, error)
	}{
		{"body follows the context", func(ctx context.Context, pw *io.PipeWriter, pr *io.PipeReader) (Source, error) {
			go func() { <-ctx.Done(); pw.CloseWithError(ctx.Err()) }()
			return Source{Body: pr, Size: 1000}, nil
		}},
		{"body ignores the context", func(_ context.Context, _ *io.PipeWriter, pr *io.PipeReader) (Source, error) {
			return Source{Body: pr, Size: 1000}, nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			data, d := content(1000)
			pr, pw := io.Pipe()
			r, err := s.Fill(t.Context(), d, func(ctx context.Context, _ int64) (Source, error) { return tc.fetch(ctx, pw, pr) })
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			go func() { _, _ = pw.Write(data[:100]) }()
			if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
				t.Fatal(err)
			}
			if fills, readers := s.FillStats(); fills != 1 || readers != 1 {
				t.Errorf("FillStats = %d, %d; want 1, 1", fills, readers)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(r); !errors.Is(err, ErrClosed) {
				t.Errorf("read after Close: %v, want ErrClosed", err)
			}
			if fills, _ := s.FillStats(); fills != 0 {
				t.Errorf("%d fills left after Close", fills)
			}
		})
	}
}

func TestCloseWhileFetching(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, d := content(10)
	errs := make(chan error, 1)
	go func() {
		_, err := s.Fill(t.Context(), d, func(ctx context.Context, _ int64) (Source, error) {
			<-ctx.Done()
			return Source{}, ctx.Err()
		})
		errs <- err
	}()
	waitReaders(s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, ErrClosed) {
		t.Errorf("Fill during Close = %v, want ErrClosed", err)
	}
}

func BenchmarkFillReaders(b *testing.B) {
	s := openTest(b, b.TempDir())
	data, d := content(4 << 20)
	const readers = 8
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var calls atomic.Int64
		fetch, pw := pipeFetch(int64(len(data)), &calls)
		var wg sync.WaitGroup
		for range readers {
			r, err := s.Fill(b.Context(), d, fetch)
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.Close()
				if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(data)) {
					b.Errorf("read %d bytes, %v", n, err)
				}
			}()
		}
		for off := 0; off < len(data); off += 32 << 10 {
			if _, err := pw.Write(data[off:min(off+32<<10, len(data))]); err != nil {
				b.Fatal(err)
			}
		}
		pw.Close()
		wg.Wait()
		if calls.Load() != 1 {
			b.Fatalf("fetch called %d times", calls.Load())
		}
		if err := s.Delete(d); err != nil {
			b.Fatal(err)
		}
	}
}
