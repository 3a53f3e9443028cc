package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// faultyOrigin serves one blob over real HTTP with the faults a bad link
// and a bad upstream show, and counts what it sent.
type faultyOrigin struct {
	data []byte
	// cutAfter cuts every response (sticky) after that many body bytes;
	// 0: never.
	cutAfter int64
	// cutFirst cuts only the first response after that many bytes.
	cutFirst int64
	// ignoreRange answers every request with the whole blob (200).
	ignoreRange bool
	// shiftRange answers a range with a Content-Range one byte off.
	shiftRange bool
	// refuseRanges answers a range with 503.
	refuseRanges bool
	// stallAfter sends that many bytes of every response, then nothing
	// until the client goes; 0: never.
	stallAfter int64
	// corruptLater flips the byte at that offset in every response after
	// the first; 0: never.
	corruptLater int

	requests atomic.Int64
	sent     atomic.Int64
	mu       sync.Mutex
	ranges   []string // the Range headers received, "" for none
}

func (o *faultyOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.requests.Add(1)
	rg := r.Header.Get("Range")
	o.mu.Lock()
	o.ranges = append(o.ranges, rg)
	o.mu.Unlock()
	size := int64(len(o.data))
	off, end := int64(0), size
	if rg != "" && !o.ignoreRange {
		if o.refuseRanges {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		v, ok := strings.CutPrefix(rg, "bytes=")
		a, b, ok2 := strings.Cut(v, "-")
		first, err := strconv.ParseInt(a, 10, 64)
		last := size - 1
		if b != "" {
			last, err = strconv.ParseInt(b, 10, 64)
		}
		if !ok || !ok2 || err != nil || first >= size || last < first || last >= size {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		off, end = first, last+1
	}
	body := o.data[off:end]
	if o.corruptLater > 0 && n > 1 && int64(o.corruptLater) >= off {
		body = bytes.Clone(body)
		body[int64(o.corruptLater)-off] ^= 0xff
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if rg != "" && !o.ignoreRange {
		first := off
		if o.shiftRange {
			first++
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, end-1, size))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	limit := int64(len(body))
	if o.cutAfter > 0 {
		limit = min(limit, o.cutAfter)
	}
	if o.cutFirst > 0 && n == 1 {
		limit = min(limit, o.cutFirst)
	}
	if o.stallAfter > 0 && o.stallAfter < limit {
		written, _ := w.Write(body[:o.stallAfter])
		o.sent.Add(int64(written))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	written, _ := w.Write(body[:limit])
	o.sent.Add(int64(written))
	if limit < int64(len(body)) {
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is cut
	}
}

// rangesSeen returns the Range headers received.
func (o *faultyOrigin) rangesSeen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.ranges)
}

// httpFetch is the fetch of a fill from url, the way the mirror does it:
// a GET, with a Range from off.
func httpFetch(url string) FetchFunc {
	return func(ctx context.Context, off int64) (Source, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return Source{}, err
		}
		end := FetchEnd(ctx)
		switch {
		case off > 0 && end > off:
			req.Header.Set("Range", BoundedRangeHeader(off, end))
		case off > 0:
			req.Header.Set("Range", RangeHeader(off))
			end = 0
		default:
			end = 0
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return Source{}, err
		}
		return ResponseSource(resp, off, end, "application/octet-stream")
	}
}

// httpSegment fetches exact ranges from url, the way the mirror does.
func httpSegment(url string, size int64) SegmentFunc {
	return func(ctx context.Context, first, last int64) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		return ResponseSegment(resp, first, last, size)
	}
}

// firstRangeFetch asks url for its first end bytes only.
func firstRangeFetch(ctx context.Context, url string, end int64) (Source, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Source{}, err
	}
	req.Header.Set("Range", FirstRangeHeader(end))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Source{}, err
	}
	return ResponseSource(resp, 0, end, "application/octet-stream")
}

// startOrigin serves o on loopback and returns its URL.
func startOrigin(t *testing.T, o *faultyOrigin) string {
	t.Helper()
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	return srv.URL + "/blob"
}

func TestFillResumesOverHTTP(t *testing.T) {
	data, d := content(1<<20 + 12345)
	size := int64(len(data))
	tests := []struct {
		name   string
		origin *faultyOrigin
		// requests is how many GETs the fill takes.
		requests int64
		// maxSent bounds the bytes the origin sent.
		maxSent int64
		// restarts is how many times the fill started over from byte 0.
		restarts int64
		wantErr  bool
	}{
		{"no fault", &faultyOrigin{}, 1, size, 0, false},
		{"every transfer cut after 300000 bytes", &faultyOrigin{cutAfter: 300000}, 4, size, 0, false},
		{"cut once, range ignored: starts over", &faultyOrigin{cutFirst: 500000, ignoreRange: true}, 2, size + 500000, 1, false},
		// The wrongly ranged body is dropped unread (the origin may still
		// push what fits the socket buffers).
		{"cut once, wrong Content-Range: starts over", &faultyOrigin{cutFirst: 500000, shiftRange: true}, 3, 2*size + 500000, 1, false},
		// Bytes that come again must be the same: a reader got them.
		{"cut once, range ignored, other bytes the second time", &faultyOrigin{cutFirst: 500000, ignoreRange: true, corruptLater: 1000}, 2, size + 500000, 1, true},
		{"every transfer cut, range ignored: gives up", &faultyOrigin{cutAfter: 300000, ignoreRange: true}, 1 + DefaultFillRetries, (1 + DefaultFillRetries) * 300000, DefaultFillRetries, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.origin
			o.data = data
			url := startOrigin(t, o)
			s := openTest(t, t.TempDir())
			// A reader attached from the start sees one clean stream.
			r, err := s.Fill(t.Context(), d, httpFetch(url))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("a fill that cannot get further ended cleanly with %d bytes", len(got))
				}
				if _, serr := s.Stat(d); !errors.Is(serr, ErrNotFound) {
					t.Errorf("a failed fill left the object visible: %v", serr)
				}
			} else if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, %v; want the %d bytes of the blob", len(got), err, size)
			}
			if n := o.requests.Load(); n != tc.requests {
				t.Errorf("%d requests (%q), want %d", n, o.rangesSeen(), tc.requests)
			}
			if n := o.sent.Load(); n > tc.maxSent {
				t.Errorf("the origin sent %d bytes, want at most %d", n, tc.maxSent)
			}
			if n := s.Stats().FillRestarts; n != tc.restarts {
				t.Errorf("%d restarts, want %d", n, tc.restarts)
			}
		})
	}
}

func TestFillResumeAsksForTheMissingBytes(t *testing.T) {
	data, d := content(1 << 20)
	o := &faultyOrigin{data: data, cutAfter: 400000}
	s := openTest(t, t.TempDir())
	r, err := s.Fill(t.Context(), d, httpFetch(startOrigin(t, o)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{"", "bytes=400000-", "bytes=800000-"}
	if got := o.rangesSeen(); !slices.Equal(got, want) {
		t.Errorf("requests %q, want %q", got, want)
	}
	if st := s.Stats(); st.FillResumes != 2 || st.FillRestarts != 0 {
		t.Errorf("stats: %d resumes, %d restarts; want 2, 0", st.FillResumes, st.FillRestarts)
	}
}

func TestPartialDownloadOutlivesTheStore(t *testing.T) {
	data, d := content(1<<20 + 7)
	dir := t.TempDir()
	// The first store's fill gets 600000 bytes, then the upstream refuses
	// every range until the fill gives up.
	first := &faultyOrigin{data: data, cutAfter: 600000, refuseRanges: true}
	s, err := Open(Options{Dir: dir, FillRetries: 1, FillRetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Fill(t.Context(), d, httpFetch(startOrigin(t, first)))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(t.Context()); err == nil {
		t.Fatal("the first fill verified without its bytes")
	}
	r.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ingest", "partial-sha256-"+d.Encoded())
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 600000 {
		t.Fatalf("partial download after the fill gave up: %v, %v", fi, err)
	}
	var m partialMeta
	if b, err := os.ReadFile(path + sidecarSuffix); err != nil || json.Unmarshal(b, &m) != nil ||
		m.Digest != d || m.Size != int64(len(data)) || m.Offset != 600000 {
		t.Fatalf("sidecar %+v, %v", m, err)
	}

	// Reopened, the next fill asks only for the missing bytes.
	second := &faultyOrigin{data: data}
	s = openTest(t, dir)
	r, err = s.Fill(t.Context(), d, httpFetch(startOrigin(t, second)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("continued fill: %d bytes, %v", len(got), err)
	}
	if rs := second.rangesSeen(); !slices.Equal(rs, []string{"bytes=600000-"}) {
		t.Errorf("the continued fill asked %q, want only the missing bytes", rs)
	}
	if n := second.sent.Load(); n != int64(len(data))-600000 {
		t.Errorf("the continued fill moved %d bytes, want %d", n, len(data)-600000)
	}
	if st := s.Stats(); st.PartialsContinued != 1 {
		t.Errorf("%d partials continued, want 1", st.PartialsContinued)
	}
	if obj, err := s.Stat(d); err != nil || obj.Size != int64(len(data)) {
		t.Errorf("continued fill not stored: %+v, %v", obj, err)
	}
	if left := dirEntries(t, filepath.Join(dir, "ingest")); len(left) != 0 {
		t.Errorf("ingest/ keeps %v after the fill stored", left)
	}
}

func TestBadPartialDownloadStartsOver(t *testing.T) {
	data, d := content(300000)
	dir := t.TempDir()
	ingest := filepath.Join(dir, "ingest")
	if err := os.MkdirAll(ingest, 0o755); err != nil {
		t.Fatal(err)
	}
	// A partial download whose bytes are not the content's.
	path := filepath.Join(ingest, "partial-sha256-"+d.Encoded())
	bad := bytes.Clone(data[:100000])
	bad[5] ^= 0xff
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSidecar(path, partialMeta{Digest: d, Size: int64(len(data)), Offset: 100000, Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Its bytes reached the reader before the digest could tell: the fill
	// fails (never a clean end) and drops them.
	o := &faultyOrigin{data: data}
	url := startOrigin(t, o)
	s := openTest(t, dir)
	r, err := s.Fill(t.Context(), d, httpFetch(url))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("fill over a bad partial: %d bytes, %v; want a digest mismatch", len(got), err)
	}
	waitFillsDone(t, s)
	if left := dirEntries(t, ingest); len(left) != 0 {
		t.Errorf("ingest/ keeps %v after a continued download failed its digest", left)
	}
	// The next fill starts from the first byte.
	r, err = s.Fill(t.Context(), d, httpFetch(url))
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the next fill: %d bytes, %v", len(got), err)
	}
	if rs := o.rangesSeen(); !slices.Equal(rs, []string{"bytes=100000-", ""}) {
		t.Errorf("requests %q: want the continuation, then the whole blob", rs)
	}
}

func TestIngestSweep(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	type file struct {
		name    string
		size    int
		age     time.Duration // of the sidecar; <0: no sidecar
		remains bool
	}
	digestOf := func(i int) digest.Digest { _, d := content(100 + i); return d }
	name := func(i int) string { return "partial-sha256-" + digestOf(i).Encoded() }
	tests := []struct {
		name     string
		maxBytes int64
		maxAge   time.Duration
		files    []file
	}{
		{"leftovers of interrupted writes go", 1 << 20, time.Hour, []file{
			{"abc-123", 10, -1, false},
			{name(1), 10, -1, false}, // no sidecar: unknown
			{name(2), 10, time.Minute, true},
		}},
		{"old partials go", 1 << 20, time.Hour, []file{
			{name(1), 10, 2 * time.Hour, false},
			{name(2), 10, 30 * time.Minute, true},
		}},
		{"the newest that fit stay", 250, 24 * time.Hour, []file{
			{name(1), 100, 3 * time.Minute, false},
			{name(2), 100, 1 * time.Minute, true},
			{name(3), 100, 2 * time.Minute, true},
		}},
		{"empty partials go", 1 << 20, time.Hour, []file{{name(1), 0, time.Minute, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ingest := filepath.Join(dir, "ingest")
			if err := os.MkdirAll(ingest, 0o755); err != nil {
				t.Fatal(err)
			}
			var want []string
			for i, f := range tc.files {
				path := filepath.Join(ingest, f.name)
				if err := os.WriteFile(path, make([]byte, f.size), 0o644); err != nil {
					t.Fatal(err)
				}
				if f.age >= 0 {
					m := partialMeta{Digest: digestOf(i + 1), Size: 1 << 20, Updated: now.Add(-f.age)}
					if strings.HasPrefix(f.name, partialPrefix) {
						m.Digest = digest.Digest("sha256:" + strings.TrimPrefix(f.name, "partial-sha256-"))
					}
					if err := writeSidecar(path, m); err != nil {
						t.Fatal(err)
					}
				}
				if f.remains {
					want = append(want, f.name, f.name+sidecarSuffix)
				}
			}
			openTestWith(t, Options{Dir: dir, IngestMaxBytes: tc.maxBytes, IngestMaxAge: tc.maxAge,
				Now: func() time.Time { return now }})
			got := dirEntries(t, ingest)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("ingest/ after Open: %q, want %q", got, want)
			}
		})
	}
}

func TestWholePartialDownloadIsOnlyVerified(t *testing.T) {
	data, d := content(200000)
	dir := t.TempDir()
	ingest := filepath.Join(dir, "ingest")
	if err := os.MkdirAll(ingest, 0o755); err != nil {
		t.Fatal(err)
	}
	// Every byte arrived, but the store stopped before it stored them.
	path := filepath.Join(ingest, "partial-sha256-"+d.Encoded())
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSidecar(path, partialMeta{Digest: d, Size: int64(len(data)), Updated: time.Now()}); err != nil {
		t.Fatal(err)
	}
	o := &faultyOrigin{data: data}
	s := openTest(t, dir)
	r, err := s.Fill(t.Context(), d, httpFetch(startOrigin(t, o)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fill of a whole partial download: %d bytes, %v", len(got), err)
	}
	if n := o.requests.Load(); n != 0 {
		t.Errorf("%d upstream requests for bytes the disk had, want 0", n)
	}
}

func TestFillInSegments(t *testing.T) {
	data, d := content(6<<20 + 3)
	size := int64(len(data))
	tests := []struct {
		name   string
		origin *faultyOrigin
		// ranges is how many range requests the fill made, at least.
		ranges int
		splits int64
		// first asks for the first SplitSize bytes only, the way the
		// mirror does; exact then bounds the bytes sent to the blob's.
		first, exact bool
	}{
		{"good origin", &faultyOrigin{}, 3, 1, false, false},
		{"good origin, first range asked for", &faultyOrigin{}, 4, 1, true, true},
		{"every transfer cut after 700000 bytes", &faultyOrigin{cutAfter: 700000}, 8, 1, false, false},
		{"every transfer cut, first range asked for", &faultyOrigin{cutAfter: 700000}, 8, 1, true, true},
		{"ranges ignored: one stream", &faultyOrigin{ignoreRange: true}, 0, 1, false, false},
		{"ranges ignored, first range asked for", &faultyOrigin{ignoreRange: true}, 0, 1, true, false},
		{"wrong Content-Range: one stream", &faultyOrigin{shiftRange: true}, 0, 1, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.origin
			o.data = data
			url := startOrigin(t, o)
			s := openTestWith(t, Options{Dir: t.TempDir(), FillConnections: 4, FillSplitSize: 2 << 20, FillSplitAfter: time.Nanosecond})
			fetch := func(ctx context.Context, off int64) (Source, error) {
				var src Source
				var err error
				if off == 0 && tc.first {
					src, err = firstRangeFetch(ctx, url, s.SplitSize())
				} else {
					src, err = httpFetch(url)(ctx, off)
				}
				src.Segment = httpSegment(url, size)
				return src, err
			}
			r, err := s.Fill(t.Context(), d, fetch)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, %v; want the blob", len(got), err)
			}
			ranged := 0
			for _, rg := range o.rangesSeen() {
				if rg != "" {
					ranged++
				}
			}
			if ranged < tc.ranges {
				t.Errorf("%d range requests (%q), want at least %d", ranged, o.rangesSeen(), tc.ranges)
			}
			if n := o.sent.Load(); tc.exact && n != size {
				t.Errorf("the origin sent %d bytes, want exactly the blob's %d", n, size)
			}
			if n := s.Stats().FillSplits; n != tc.splits {
				t.Errorf("%d fills split, want %d", n, tc.splits)
			}
			if obj, err := s.Stat(d); err != nil || obj.Size != size {
				t.Errorf("not stored: %+v, %v", obj, err)
			}
		})
	}
}

func TestSegmentedPartialKeepsItsRanges(t *testing.T) {
	data, d := content(6 << 20)
	size := int64(len(data))
	for _, tc := range []struct {
		name string
		// ranges: the continuing fill may fetch in ranges.
		ranges bool
	}{
		{name: "continued in one stream"},
		{name: "continued in ranges", ranges: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// Ranges are cut after 500000 bytes and then refused, so the
			// fill gives up with bytes of several ranges in its file.
			o := &faultyOrigin{data: data, cutAfter: 500000}
			url := startOrigin(t, o)
			var refuse atomic.Bool
			fetch := func(ctx context.Context, off int64) (Source, error) {
				if refuse.Load() {
					return Source{}, errors.New("refused")
				}
				src, err := httpFetch(url)(ctx, off)
				src.Segment = func(ctx context.Context, first, last int64) (io.ReadCloser, error) {
					if o.requests.Load() > 4 {
						refuse.Store(true)
					}
					if refuse.Load() {
						return nil, errors.New("refused")
					}
					return httpSegment(url, size)(ctx, first, last)
				}
				return src, err
			}
			split := Options{FillConnections: 4, FillSplitSize: 4 << 20, FillSplitAfter: time.Nanosecond, FillRetries: 1, FillRetryBackoff: time.Millisecond}
			opts := split
			opts.Dir = dir
			s, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.Fill(t.Context(), d, fetch)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Wait(t.Context()); err == nil {
				t.Fatal("verified without its bytes")
			}
			r.Close()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// The file holds the prefix its sidecar records, and the
			// content's bytes in every extent it records beyond it.
			path := filepath.Join(dir, "ingest", "partial-sha256-"+d.Encoded())
			kept, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := readSidecar(path)
			if err != nil {
				t.Fatal(err)
			}
			if m.Offset <= 0 || m.Offset > int64(len(kept)) || !bytes.Equal(kept[:m.Offset], data[:m.Offset]) {
				t.Fatalf("the kept partial download (%d bytes) does not start with the %d bytes of prefix recorded", len(kept), m.Offset)
			}
			if !m.Segmented || len(m.Extents) == 0 {
				t.Fatalf("the sidecar records no range beyond the prefix: %+v", m)
			}
			last := m.Offset
			for _, e := range m.Extents {
				if e.First <= last || e.End <= e.First || e.End > int64(len(kept)) || !bytes.Equal(kept[e.First:e.End], data[e.First:e.End]) {
					t.Fatalf("extent %+v (after byte %d) does not hold the content's bytes in a file of %d", e, last, len(kept))
				}
				last = e.End
			}
			second := &faultyOrigin{data: data}
			url2 := startOrigin(t, second)
			next := httpFetch(url2)
			// The body that continues the prefix is asked up to the first
			// extent. Without ranges the fill then goes on from there in
			// one stream; with them it fetches only the gaps between the
			// extents.
			want := []string{fmt.Sprintf("bytes=%d-%d", m.Offset, m.Extents[0].First-1), fmt.Sprintf("bytes=%d-", m.Extents[0].First)}
			opts = Options{Dir: dir}
			if tc.ranges {
				opts = split
				opts.Dir = dir
				next = func(ctx context.Context, off int64) (Source, error) {
					src, err := httpFetch(url2)(ctx, off)
					src.Segment = httpSegment(url2, size)
					return src, err
				}
				want = []string{fmt.Sprintf("bytes=%d-%d", m.Offset, m.Extents[0].First-1)}
				cur := m.Extents[0].End
				for _, e := range m.Extents[1:] {
					want = append(want, fmt.Sprintf("bytes=%d-%d", cur, e.First-1))
					cur = e.End
				}
				if cur < size {
					want = append(want, fmt.Sprintf("bytes=%d-%d", cur, size-1))
				}
			}
			s = openTestWith(t, opts)
			r, err = s.Fill(t.Context(), d, next)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("continued: %d bytes, %v", len(got), err)
			}
			rs := second.rangesSeen()
			slices.Sort(rs)
			slices.Sort(want)
			if !slices.Equal(rs, want) {
				t.Errorf("continued with %q, want only the missing bytes %q", rs, want)
			}
		})
	}
}

func TestFillTurnsToAnotherSource(t *testing.T) {
	data, d := content(1 << 20)
	stalled := &faultyOrigin{data: data, stallAfter: 300000}
	good := &faultyOrigin{data: data}
	s := openTestWith(t, Options{Dir: t.TempDir(), SlowSourceAfter: 50 * time.Millisecond})
	first, err := s.Fill(t.Context(), d, httpFetch(startOrigin(t, stalled)))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// A client of another upstream joins and offers its source.
	second, err := s.Fill(t.Context(), d, fetchOf(nil, 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.AddSource(httpFetch(startOrigin(t, good)))
	for _, r := range []*Reader{first, second} {
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, %v; want the blob", len(got), err)
		}
	}
	if rs := good.rangesSeen(); len(rs) != 1 || !strings.HasPrefix(rs[0], "bytes=") || rs[0] == "bytes=0-" {
		t.Errorf("the second source was asked %q, want the bytes the first did not send", rs)
	}
	if n := good.sent.Load() + stalled.sent.Load(); n != int64(len(data)) {
		t.Errorf("the sources sent %d bytes together, want %d", n, len(data))
	}
	if n := s.Stats().SourceSwitches; n < 1 {
		t.Errorf("%d source switches, want at least 1", n)
	}
}

func TestIngestSweptWhileOpen(t *testing.T) {
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	openTestWith(t, Options{Dir: dir, IngestMaxAge: 4 * time.Second, Now: clock})
	_, d := content(321)
	path := filepath.Join(dir, "ingest", "partial-sha256-"+d.Encoded())
	if err := os.WriteFile(path, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSidecar(path, partialMeta{Digest: d, Size: 321, Offset: 100, Updated: clock()}); err != nil {
		t.Fatal(err)
	}
	// Hours later, with no fill in between, the partial download goes.
	now.Add(int64(time.Hour))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a partial download past its age was never swept")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if left := dirEntries(t, filepath.Join(dir, "ingest")); len(left) != 0 {
		t.Errorf("ingest/ keeps %v", left)
	}
}

func TestJoinerDoesNotWaitOnAnotherUpstream(t *testing.T) {
	data, d := content(1000)
	s := openTestWith(t, Options{Dir: t.TempDir(), SlowSourceAfter: 50 * time.Millisecond})
	answer := make(chan struct{})
	hung := func(ctx context.Context, off int64) (Source, error) {
		select {
		case <-answer:
		case <-ctx.Done():
			return Source{}, ctx.Err()
		}
		return Source{Body: io.NopCloser(bytes.NewReader(data)), Size: int64(len(data))}, nil
	}
	first := make(chan error, 1)
	go func() {
		r, err := s.Fill(t.Context(), d, hung)
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		first <- err
	}()
	waitReaders(s, 1)
	// The caller that started the fill waits for its own upstream; one
	// that joined it does not wait on that upstream's trouble.
	if _, err := s.Fill(t.Context(), d, fetchOf(data, int64(len(data)), nil)); !errors.Is(err, ErrSlowFill) {
		t.Errorf("joining a fill whose upstream does not answer: %v, want ErrSlowFill", err)
	}
	close(answer)
	if err := <-first; err != nil {
		t.Errorf("the caller that started the fill: %v", err)
	}
}

func TestPartialKeepsOnlyRecordedExtents(t *testing.T) {
	data, d := content(1 << 20)
	size := int64(len(data))
	for _, tc := range []struct {
		name      string
		file      int64 // bytes of the content in the data file
		meta      partialMeta
		wantN     int64
		wantExt   []extent
		wantBytes int64 // the data file's length after opening
	}{
		{name: "one stream trusts the file", file: 300000,
			meta:  partialMeta{Offset: 100000, Extents: []extent{{First: 200000, End: 250000}}},
			wantN: 300000, wantBytes: 300000},
		{name: "ranges keep their extents", file: 700000,
			meta:  partialMeta{Offset: 100000, Segmented: true, Extents: []extent{{First: 200000, End: 250000}, {First: 400000, End: 500000}}},
			wantN: 100000, wantExt: []extent{{First: 200000, End: 250000}, {First: 400000, End: 500000}}, wantBytes: 500000},
		{name: "extents touching merge", file: 700000,
			meta:  partialMeta{Offset: 100000, Segmented: true, Extents: []extent{{First: 200000, End: 250000}, {First: 250000, End: 300000}}},
			wantN: 100000, wantExt: []extent{{First: 200000, End: 300000}}, wantBytes: 300000},
		{name: "extents past the file are cut", file: 450000,
			meta:  partialMeta{Offset: 100000, Segmented: true, Extents: []extent{{First: 200000, End: 250000}, {First: 400000, End: 500000}}},
			wantN: 100000, wantExt: []extent{{First: 200000, End: 250000}, {First: 400000, End: 450000}}, wantBytes: 450000},
		{name: "extents out of order or overlapping the prefix", file: 700000,
			meta:  partialMeta{Offset: 100000, Segmented: true, Extents: []extent{{First: 50000, End: 150000}, {First: 400000, End: 500000}, {First: 200000, End: 250000}}},
			wantN: 100000, wantExt: []extent{{First: 100000, End: 150000}, {First: 400000, End: 500000}}, wantBytes: 500000},
		{name: "no prefix but extents", file: 700000,
			meta:  partialMeta{Offset: 0, Segmented: true, Extents: []extent{{First: 400000, End: 500000}}},
			wantN: 0, wantExt: []extent{{First: 400000, End: 500000}}, wantBytes: 500000},
		{name: "nothing recorded", file: 700000,
			meta:  partialMeta{Offset: 0, Segmented: true},
			wantN: 0, wantBytes: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir())
			path := s.partialPath(d)
			if err := os.WriteFile(path, data[:tc.file], 0o644); err != nil {
				t.Fatal(err)
			}
			m := tc.meta
			m.Digest, m.Size = d, size
			if err := writeSidecar(path, m); err != nil {
				t.Fatal(err)
			}
			f, n, got, err := s.openPartial(d)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.wantN || !slices.Equal(got.Extents, tc.wantExt) || fi.Size() != tc.wantBytes {
				t.Errorf("opened with a prefix of %d, extents %v, %d bytes; want %d, %v, %d bytes",
					n, got.Extents, fi.Size(), tc.wantN, tc.wantExt, tc.wantBytes)
			}
		})
	}
}

func TestContinueEnd(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name        string
		connections int
		size, pos   int64
		extents     []extent
		want        int64
	}{
		{"kept ranges: up to the first", 4, 64 * mib, 10 * mib, []extent{{First: 20 * mib, End: 30 * mib}, {First: 40 * mib, End: 50 * mib}}, 20 * mib},
		{"prefix only, a large rest: a first part", 4, 256 * mib, 10 * mib, nil, 10*mib + 32*mib},
		{"prefix only, a rest within a part: to the end", 4, 40 * mib, 10 * mib, nil, 0},
		{"one connection: to the end", 1, 256 * mib, 10 * mib, nil, 0},
		{"size unknown: to the end", 4, -1, 10 * mib, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestWith(t, Options{Dir: t.TempDir(), FillConnections: tc.connections})
			fl := &fill{partialMeta: partialMeta{Size: tc.size}}
			tr := &transfer{s: s, fl: fl, pos: tc.pos, extents: tc.extents}
			if got := tr.continueEnd(); got != tc.want {
				t.Errorf("continueEnd() = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFetchEnd(t *testing.T) {
	tests := []struct {
		name string
		end  int64
		want int64
	}{
		{"an end", 4096, 4096},
		{"none", 0, 0},
		{"negative: none", -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FetchEnd(withFetchEnd(t.Context(), tc.end)); got != tc.want {
				t.Errorf("FetchEnd(withFetchEnd(ctx, %d)) = %d, want %d", tc.end, got, tc.want)
			}
		})
	}
	if got := BoundedRangeHeader(100, 200); got != "bytes=100-199" {
		t.Errorf("BoundedRangeHeader(100, 200) = %q, want bytes=100-199", got)
	}
}
