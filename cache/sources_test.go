package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pacedOrigin serves one blob over real HTTP, from the offset a
// "bytes=N-" Range asks for, at most rate bytes per second when rate is
// set, and counts what it sent.
type pacedOrigin struct {
	data []byte
	rate int64

	sent   atomic.Int64
	mu     sync.Mutex
	ranges []string
}

func (o *pacedOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rg := r.Header.Get("Range")
	o.mu.Lock()
	o.ranges = append(o.ranges, rg)
	o.mu.Unlock()
	size := int64(len(o.data))
	off := int64(0)
	if rg != "" {
		v, ok := strings.CutPrefix(rg, "bytes=")
		first, err := strconv.ParseInt(strings.TrimSuffix(v, "-"), 10, 64)
		if !ok || !strings.HasSuffix(v, "-") || err != nil || first >= size {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		off = first
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, size-1, size))
	}
	w.Header().Set("Content-Length", strconv.FormatInt(size-off, 10))
	if rg != "" {
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	chunk := int64(16 << 10)
	if o.rate == 0 {
		chunk = size
	}
	for off < size {
		n, err := w.Write(o.data[off:min(off+chunk, size)])
		o.sent.Add(int64(n))
		off += int64(n)
		if err != nil {
			return
		}
		if o.rate > 0 {
			w.(http.Flusher).Flush()
			select {
			case <-time.After(time.Duration(chunk) * time.Second / time.Duration(o.rate)):
			case <-r.Context().Done():
				return
			}
		}
	}
}

// firstRange returns the first Range header received.
func (o *pacedOrigin) firstRange() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.ranges) == 0 {
		return "none"
	}
	return o.ranges[0]
}

// endpointsFetch is the fetch of an upstream with two endpoints, the way
// the upstream client orders them: the first until a body of it is
// demoted, then the second.
func endpointsFetch(first, second string, demotes *atomic.Int64) FetchFunc {
	return func(ctx context.Context, off int64) (Source, error) {
		url := first
		if demotes.Load() > 0 {
			url = second
		}
		src, err := httpFetch(url)(ctx, off)
		if err == nil && url == first {
			src.Demote = func(string) bool { demotes.Add(1); return true }
		}
		return src, err
	}
}

func TestFillLeavesSlowSource(t *testing.T) {
	const slowRate = 512 << 10
	cases := []struct {
		name string
		size int
		// other is the rate of the other source (0: unpaced), none when
		// absent.
		other     int64
		none      bool
		endpoints bool // the other source is the own fetch's next endpoint
		// wantSwitches is how often the fill changes source.
		wantSwitches int64
		// slowSendsLittle: the slow source sends less than half the blob.
		slowSendsLittle bool
	}{
		{name: "a joined source is faster", size: 4 << 20, wantSwitches: 1, slowSendsLittle: true},
		{name: "the next endpoint is faster", size: 4 << 20, endpoints: true, wantSwitches: 1, slowSendsLittle: true},
		{name: "no other source", size: 1 << 20, none: true, wantSwitches: 0},
		{name: "the other source is as slow", size: 3 << 19, other: slowRate, wantSwitches: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, d := content(tc.size)
			slow := &pacedOrigin{data: data, rate: slowRate}
			other := &pacedOrigin{data: data, rate: tc.other}
			slowSrv, otherSrv := httptest.NewServer(slow), httptest.NewServer(other)
			t.Cleanup(slowSrv.Close)
			t.Cleanup(otherSrv.Close)
			// Under 4 MiB/s is slow here, so that the slow origin is slow
			// at a pace that keeps the test short.
			s := openTestWith(t, Options{Dir: t.TempDir(), SlowSourceRate: 4 << 20})
			var demotes atomic.Int64
			own := httpFetch(slowSrv.URL)
			if tc.endpoints {
				own = endpointsFetch(slowSrv.URL, otherSrv.URL, &demotes)
			}
			first, err := s.Fill(t.Context(), d, own)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			readers := []*Reader{first}
			if !tc.none && !tc.endpoints {
				// A client of another upstream joins and offers its source.
				second, err := s.Fill(t.Context(), d, fetchOf(nil, 0, nil))
				if err != nil {
					t.Fatal(err)
				}
				defer second.Close()
				second.AddSource(httpFetch(otherSrv.URL))
				readers = append(readers, second)
			}
			for _, r := range readers {
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("read %d bytes, %v; want the blob", len(got), err)
				}
			}
			if n := s.Stats().SourceSwitches; n != tc.wantSwitches {
				t.Errorf("%d source switches, want %d", n, tc.wantSwitches)
			}
			if tc.slowSendsLittle && slow.sent.Load() >= int64(tc.size)/2 {
				t.Errorf("the slow source sent %d of %d bytes, want less than half", slow.sent.Load(), tc.size)
			}
			if tc.endpoints && demotes.Load() != 1 {
				t.Errorf("%d endpoints demoted, want 1", demotes.Load())
			}
			if tc.wantSwitches > 0 {
				if rg := other.firstRange(); rg == "" || rg == "bytes=0-" || rg == "none" {
					t.Errorf("the other source was asked %q, want the bytes the slow one did not send", rg)
				}
			} else if n := slow.sent.Load(); n != int64(tc.size) {
				t.Errorf("the only source sent %d bytes, want %d", n, tc.size)
			}
		})
	}
}

func TestRateMeter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name     string
		samples  []rateSample
		wantRate int64
		wantOK   bool
	}{
		{"one sample", []rateSample{{at(0), 0}}, 0, false},
		{"under a window", []rateSample{{at(0), 0}, {at(500), 1 << 20}}, 0, false},
		{"one window", []rateSample{{at(0), 0}, {at(500), 1 << 20}, {at(1000), 2 << 20}}, 2 << 20, true},
		{"older samples dropped", []rateSample{{at(0), 0}, {at(1000), 100}, {at(2000), 100 + 4<<20}}, 4 << 20, true},
		{"stalled", []rateSample{{at(0), 5}, {at(750), 5}, {at(1500), 5}}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m rateMeter
			var rate int64
			var ok bool
			for _, s := range tc.samples {
				rate, ok = m.add(s.at, s.moved)
			}
			if rate != tc.wantRate || ok != tc.wantOK {
				t.Errorf("rate = %d, %v; want %d, %v", rate, ok, tc.wantRate, tc.wantOK)
			}
		})
	}
}
