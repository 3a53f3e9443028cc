package hubtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// rangeGet sends GET u with an optional Range header (and Authorization
// when tok is set) without following redirects, and reads the answer.
func rangeGet(t *testing.T, u, rng, tok string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, bodyErr := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: body, bodyErr: bodyErr}
}

// blobBytes returns the content of the seeded blob.
func blobBytes(t *testing.T, size, seed int64) []byte {
	t.Helper()
	b, err := io.ReadAll(SeededBlob(size, seed))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBlobRanges checks that the CDN and a front serving blobs itself
// answer single byte ranges from the registry, and that per-blob counters
// see every request and byte.
func TestBlobRanges(t *testing.T) {
	const size = 200 << 10
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			h := startHub(t, Options{DirectBlobs: direct})
			layer, _, err := h.PushLargeBlobImage("library/r", "1", size, 5)
			if err != nil {
				t.Fatal(err)
			}
			want := blobBytes(t, size, 5)
			tok := token(t, h, "", "", "repository:library/r:pull")
			u, bearer := h.signedBlobURL("library/r", layer, cdnLifetime), ""
			if direct {
				u, bearer = h.URL+"/v2/library/r/blobs/"+layer, tok
				if a := rangeGet(t, u, "", tok); a.status != http.StatusOK || !bytes.Equal(a.body, want) {
					t.Fatalf("direct blob GET: %d, %d bytes", a.status, len(a.body))
				}
			}
			tests := []struct {
				rng        string
				start, end int64 // the bytes expected, end exclusive
			}{
				{"bytes=1000-", 1000, size},
				{"bytes=0-99", 0, 100},
				{"bytes=4096-8191", 4096, 8192},
				{fmt.Sprintf("bytes=%d-", size-1), size - 1, size},
			}
			for _, tc := range tests {
				h.Counters.Reset()
				a := rangeGet(t, u, tc.rng, bearer)
				if a.status != http.StatusPartialContent || a.bodyErr != nil {
					t.Fatalf("%s: status %d, body error %v", tc.rng, a.status, a.bodyErr)
				}
				if cr := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, size); a.header.Get("Content-Range") != cr {
					t.Errorf("%s: Content-Range %q, want %q", tc.rng, a.header.Get("Content-Range"), cr)
				}
				if !bytes.Equal(a.body, want[tc.start:tc.end]) {
					t.Errorf("%s: wrong %d bytes", tc.rng, len(a.body))
				}
				got := h.Counters.Blob(layer)
				if got.Requests != 1 || got.Ranges != 1 || got.Bytes != tc.end-tc.start || got.Redirects != 0 || got.Peak != 1 {
					t.Errorf("%s: blob traffic %s, want 1 range request of %d bytes", tc.rng, got, tc.end-tc.start)
				}
			}
		})
	}
}

// resumeWithRange downloads a blob of size bytes from u the way a
// resuming client does: GET, then Range from the last byte received after
// every break. It returns the bytes and the number of requests.
func resumeWithRange(t *testing.T, u string, size int64) ([]byte, int) {
	t.Helper()
	var got []byte
	requests := 0
	for int64(len(got)) < size {
		requests++
		if requests > 100 {
			t.Fatalf("no progress: %d of %d bytes after 100 requests", len(got), size)
		}
		rng := ""
		if len(got) > 0 {
			rng = "bytes=" + strconv.Itoa(len(got)) + "-"
		}
		a := rangeGet(t, u, rng, "")
		switch {
		case rng == "" && a.status != http.StatusOK, rng != "" && a.status != http.StatusPartialContent:
			t.Fatalf("request %d (%q): status %d", requests, rng, a.status)
		case rng != "" && a.header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", len(got), size-1, size):
			t.Fatalf("request %d: Content-Range %q", requests, a.header.Get("Content-Range"))
		}
		got = append(got, a.body...)
	}
	return got, requests
}

// TestCut checks FaultCut: every transfer of the blob, Range answers
// included, stops after After bytes, so a resuming client needs
// ceil(size/After) requests and moves the blob's size exactly; other
// blobs pass when the fault names a digest.
func TestCut(t *testing.T) {
	h := startHub(t, Options{})
	const size, after = 300 << 10, 64 << 10
	layer, _, err := h.PushLargeBlobImage("library/cut", "1", size, 8)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := h.PushLargeBlobImage("library/cut", "2", size, 9)
	if err != nil {
		t.Fatal(err)
	}
	want := blobBytes(t, size, 8)
	h.SetFault(Fault{Kind: FaultCut, Target: TargetBlob, Digest: layer, After: after})
	u := h.signedBlobURL("library/cut", layer, cdnLifetime)

	a := rangeGet(t, u, "", "")
	if a.status != 200 || a.header.Get("Content-Length") != strconv.Itoa(size) || !errors.Is(a.bodyErr, io.ErrUnexpectedEOF) || len(a.body) != after {
		t.Errorf("cut GET: %d, length %q, %d bytes, body error %v", a.status, a.header.Get("Content-Length"), len(a.body), a.bodyErr)
	}
	a = rangeGet(t, u, "bytes=100000-", "")
	if a.status != 206 || !errors.Is(a.bodyErr, io.ErrUnexpectedEOF) || !bytes.Equal(a.body, want[100000:100000+after]) {
		t.Errorf("cut Range GET: %d, %d bytes, body error %v", a.status, len(a.body), a.bodyErr)
	}
	if a := rangeGet(t, u, "bytes=0-999", ""); a.status != 206 || a.bodyErr != nil || !bytes.Equal(a.body, want[:1000]) {
		t.Errorf("a range shorter than the cut: %d, %d bytes, body error %v", a.status, len(a.body), a.bodyErr)
	}

	h.Counters.Reset()
	got, requests := resumeWithRange(t, u, size)
	if !bytes.Equal(got, want) || requests != (size+after-1)/after {
		t.Errorf("resumed download: %d requests, content equal %v; want %d requests", requests, bytes.Equal(got, want), (size+after-1)/after)
	}
	if tr := h.Counters.Blob(layer); tr.Bytes != size || tr.Requests != int64(requests) || tr.Ranges != int64(requests-1) {
		t.Errorf("blob traffic %s, want %d requests of %d bytes in all", tr, requests, size)
	}
	if n := h.Counters.Faults.Load(); n != int64(requests) {
		t.Errorf("faults applied %d, want %d", n, requests)
	}

	ou := h.signedBlobURL("library/cut", other, cdnLifetime)
	if a := rangeGet(t, ou, "", ""); a.status != 200 || a.bodyErr != nil || len(a.body) != size {
		t.Errorf("a blob the fault does not name: %d, %d bytes, %v", a.status, len(a.body), a.bodyErr)
	}
	if tr := h.Counters.Blob(other); tr.Bytes != size || tr.Requests != 1 {
		t.Errorf("traffic of the other blob: %s", tr)
	}
}

// TestRangeFaults checks an origin that ignores Range and one that
// answers another range than asked.
func TestRangeFaults(t *testing.T) {
	h := startHub(t, Options{})
	const size = 100 << 10
	layer, _, err := h.PushLargeBlobImage("library/rf", "1", size, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := blobBytes(t, size, 10)
	u := h.signedBlobURL("library/rf", layer, cdnLifetime)
	tests := []struct {
		name       string
		fault      Fault
		rng        string
		status     int
		cr         string // Content-Range
		start, end int64
	}{
		{"ignore Range", Fault{Kind: FaultIgnoreRange, Target: TargetBlob}, "bytes=5000-", 200, "", 0, size},
		{"ignore Range, no Range", Fault{Kind: FaultIgnoreRange, Target: TargetBlob}, "", 200, "", 0, size},
		{"wrong range back", Fault{Kind: FaultWrongRange, Target: TargetBlob, Shift: 1000}, "bytes=5000-", 206,
			fmt.Sprintf("bytes 4000-%d/%d", size-1, size), 4000, size},
		{"wrong range forward", Fault{Kind: FaultWrongRange, Target: TargetBlob, Shift: 1000}, "bytes=10-19", 206,
			fmt.Sprintf("bytes 1010-1019/%d", size), 1010, 1020},
		{"wrong range, default shift", Fault{Kind: FaultWrongRange, Target: TargetBlob}, "bytes=8192-", 206,
			fmt.Sprintf("bytes 4096-%d/%d", size-1, size), 4096, size},
		{"wrong range, no Range", Fault{Kind: FaultWrongRange, Target: TargetBlob}, "", 200, "", 0, size},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.SetFault(tc.fault)
			defer h.SetFault(Fault{})
			a := rangeGet(t, u, tc.rng, "")
			if a.status != tc.status || a.bodyErr != nil || a.header.Get("Content-Range") != tc.cr {
				t.Fatalf("status %d, Content-Range %q, body error %v; want %d, %q", a.status, a.header.Get("Content-Range"), a.bodyErr, tc.status, tc.cr)
			}
			if !bytes.Equal(a.body, want[tc.start:tc.end]) {
				t.Errorf("body of %d bytes, want bytes %d-%d", len(a.body), tc.start, tc.end-1)
			}
		})
	}
}

// TestExpiry checks FaultExpiry: a short-lived URL stops its transfer the
// moment it expires and is refused afterwards; a new front GET gives a
// new URL that serves the rest with Range.
func TestExpiry(t *testing.T) {
	clock := &fakeClock{now: time.Now()}
	h := startHub(t, Options{Now: clock.Now})
	const size = 512 << 10
	layer, _, err := h.PushLargeBlobImage("library/exp", "1", size, 12)
	if err != nil {
		t.Fatal(err)
	}
	want := blobBytes(t, size, 12)
	tok := token(t, h, "", "", "repository:library/exp:pull")
	h.SetFault(Fault{Kind: FaultExpiry, Target: TargetBlob, Delay: time.Minute})
	// A throttled body, so that the clock moves while it is under way.
	h.AddFault(Fault{Kind: FaultBandwidth, Target: TargetBlob, BytesPerSecond: 1 << 20})
	loc := func() string {
		resp, _ := frontGet(t, h, http.MethodGet, "/v2/library/exp/blobs/"+layer, tok)
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("blob GET: %d", resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	first := loc()
	resp, err := http.Get(first)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 32<<10)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("reading the start of the body: %v", err)
	}
	clock.Advance(2 * time.Minute)
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := append(head, rest...)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) >= size || !bytes.Equal(got, want[:len(got)]) {
		t.Fatalf("transfer past its expiry: %d bytes, error %v; want a clean prefix cut short", len(got), err)
	}
	if a := rangeGet(t, first, fmt.Sprintf("bytes=%d-", len(got)), ""); a.status != http.StatusForbidden {
		t.Errorf("expired URL: status %d, want 403", a.status)
	}
	if n := h.Counters.CDNExpired.Load(); n != 2 {
		t.Errorf("CDNExpired = %d, want 2 (the stopped transfer and the refused request)", n)
	}
	a := rangeGet(t, loc(), fmt.Sprintf("bytes=%d-", len(got)), "")
	if a.status != http.StatusPartialContent || a.bodyErr != nil || !bytes.Equal(append(got, a.body...), want) {
		t.Errorf("the rest from a new URL: %d, %d bytes, %v", a.status, len(a.body), a.bodyErr)
	}
	if tr := h.Counters.Blob(layer); tr.Redirects != 2 || tr.Requests != 4 || tr.Bytes != size {
		t.Errorf("blob traffic %s, want 2 redirects, 4 requests, %d bytes", tr, size)
	}
}

// TestConnPacer checks the bookkeeping of the per-connection cap: the
// answers on one connection share its pace, other connections have their
// own.
func TestConnPacer(t *testing.T) {
	var a, b connPacer
	first := a.reserve(1000, 1000)
	second := a.reserve(500, 1000)
	if d := second.Sub(first); d != 500*time.Millisecond {
		t.Errorf("second reservation on one connection %v after the first, want 500ms", d)
	}
	if other := b.reserve(1000, 1000); !other.Before(second) {
		t.Errorf("another connection waits behind the first (%v, not before %v)", other, second)
	}
	// A write a little late is counted from when the bytes before it
	// left; after a long idle time the connection starts afresh.
	var c connPacer
	c.next = time.Now().Add(-paceSlack / 2)
	late := c.next
	if got := c.reserve(1000, 1000); got != late.Add(time.Second) {
		t.Errorf("a late write: due %v, want %v", got, late.Add(time.Second))
	}
	c.next = time.Now().Add(-time.Minute)
	if got := c.reserve(1000, 1000); got.Before(time.Now().Add(time.Second / 2)) {
		t.Errorf("after an idle minute the connection may burst: due %v", got)
	}
}

// TestConnBandwidth fetches one blob over several connections in parallel
// ranges under FaultConnBandwidth: each connection gets its own pacer and
// the parts add up to the blob.
func TestConnBandwidth(t *testing.T) {
	h := startHub(t, Options{})
	const size, parts = 256 << 10, 4
	layer, _, err := h.PushLargeBlobImage("library/cap", "1", size, 13)
	if err != nil {
		t.Fatal(err)
	}
	want := blobBytes(t, size, 13)
	h.SetFault(Fault{Kind: FaultConnBandwidth, Target: TargetBlob, BytesPerSecond: 256 << 10})
	u := h.signedBlobURL("library/cap", layer, cdnLifetime)
	got := make([][]byte, parts)
	var wg sync.WaitGroup
	for i := range parts {
		wg.Go(func() {
			start, end := int64(i)*size/parts, int64(i+1)*size/parts-1
			a := rangeGet(t, u, fmt.Sprintf("bytes=%d-%d", start, end), "")
			if a.status != http.StatusPartialContent || a.bodyErr != nil {
				t.Errorf("part %d: %d, %v", i, a.status, a.bodyErr)
			}
			got[i] = a.body
		})
	}
	wg.Wait()
	if !bytes.Equal(bytes.Join(got, nil), want) {
		t.Errorf("the parts do not make up the blob")
	}
	if tr := h.Counters.Blob(layer); tr.Requests != parts || tr.Ranges != parts || tr.Bytes != size || tr.Peak < 2 || h.Counters.Faults.Load() != parts {
		t.Errorf("blob traffic %s, faults %d; want %d ranges of %d bytes in all", tr, h.Counters.Faults.Load(), parts, size)
	}
}

// TestAddFault checks that faults added together all act, and that Count
// spends each one on its own.
func TestAddFault(t *testing.T) {
	h := startHub(t, Options{})
	const size = 64 << 10
	layer, _, err := h.PushLargeBlobImage("library/two", "1", size, 14)
	if err != nil {
		t.Fatal(err)
	}
	u := h.signedBlobURL("library/two", layer, cdnLifetime)
	h.SetFault(Fault{Kind: FaultCut, Target: TargetBlob, After: 1000, Count: 1})
	h.AddFault(Fault{Kind: FaultIgnoreRange, Target: TargetBlob, Count: 2})
	h.AddFault(Fault{})
	for i, want := range []struct {
		status int
		n      int
	}{{200, 1000}, {200, size}, {206, size - 10}} {
		a := rangeGet(t, u, "bytes=10-", "")
		if a.status != want.status || len(a.body) != want.n {
			t.Errorf("request %d: %d with %d bytes, want %d with %d", i, a.status, len(a.body), want.status, want.n)
		}
	}
	h.mu.Lock()
	left := len(h.faults)
	h.mu.Unlock()
	if left != 0 {
		t.Errorf("%d faults left after their counts were spent", left)
	}
}

// TestSetFaultEndsPace: a transfer paced at 4 KB/s goes on at full speed
// once SetFault replaces the fault; at the old pace its 1 MiB would take
// over four minutes, past the client's 60-second limit.
func TestSetFaultEndsPace(t *testing.T) {
	h := startHub(t, Options{})
	const size = 1 << 20
	layer, _, err := h.PushLargeBlobImage("library/pace", "1", size, 15)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []FaultKind{FaultBandwidth, FaultConnBandwidth} {
		t.Run(kind.String(), func(t *testing.T) {
			h.SetFault(Fault{Kind: kind, Target: TargetBlob, BytesPerSecond: 4 << 10})
			client := &http.Client{Timeout: time.Minute}
			resp, err := client.Get(h.signedBlobURL("library/pace", layer, cdnLifetime))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			head := make([]byte, 1024)
			if _, err := io.ReadFull(resp.Body, head); err != nil {
				t.Fatal(err)
			}
			h.SetFault(Fault{})
			rest, err := io.ReadAll(resp.Body)
			if err != nil || len(head)+len(rest) != size {
				t.Errorf("after SetFault: %d bytes, %v", len(head)+len(rest), err)
			}
		})
	}
}
