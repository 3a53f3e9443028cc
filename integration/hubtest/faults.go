package hubtest

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"
)

// FaultKind is a kind of injected misbehaviour.
type FaultKind int

// The fault kinds.
const (
	// FaultNone injects nothing.
	FaultNone FaultKind = iota
	// FaultRefuse closes the connection without answering. A Go client
	// that sent the request on a reused idle connection retries it once
	// on a new one, so with Count 1 such a client may not notice.
	FaultRefuse
	// Fault503 answers 503 with an UNAVAILABLE error body.
	Fault503
	// Fault429 answers 429 TOOMANYREQUESTS with Retry-After: 7.
	Fault429
	// FaultLatency waits Delay before answering normally.
	FaultLatency
	// FaultBandwidth caps the body rate at BytesPerSecond.
	FaultBandwidth
	// FaultTruncate sends the full Content-Length, then closes the
	// connection after half of the body.
	FaultTruncate
	// FaultCorrupt flips one byte in the middle of the body and keeps
	// its length.
	FaultCorrupt
	// FaultNoBody sends the status and the full Content-Length, then
	// closes the connection before the first byte of the body.
	FaultNoBody
	// FaultOversize answers 200 with a JSON object of Size bytes (spaces
	// inside braces) instead of the real answer, announcing Announce as
	// its Content-Length when positive, else sending it chunked.
	FaultOversize
)

// String returns the name of the fault kind.
func (k FaultKind) String() string {
	switch k {
	case FaultNone:
		return "none"
	case FaultRefuse:
		return "refuse"
	case Fault503:
		return "503"
	case Fault429:
		return "429"
	case FaultLatency:
		return "latency"
	case FaultBandwidth:
		return "bandwidth"
	case FaultTruncate:
		return "truncate"
	case FaultCorrupt:
		return "corrupt"
	case FaultNoBody:
		return "no-body"
	case FaultOversize:
		return "oversize"
	default:
		return "fault(" + strconv.Itoa(int(k)) + ")"
	}
}

// altersBody reports whether the fault acts on a response body, so that it
// applies only to answers that have one.
func (k FaultKind) altersBody() bool {
	return k == FaultBandwidth || k == FaultTruncate || k == FaultCorrupt || k == FaultNoBody || k == FaultOversize
}

// Fault targets: which requests a Fault applies to.
const (
	// TargetAll applies a fault to every request of the front, the token
	// realm and the CDN.
	TargetAll = ""
	// TargetManifest applies a fault to manifest GETs and HEADs.
	TargetManifest = "manifest"
	// TargetBlob applies a fault to blob requests of the front and of the
	// CDN. The front answers a blob GET with a redirect, so body faults
	// act on the CDN's bodies.
	TargetBlob = "blob"
	// TargetToken applies a fault to token requests.
	TargetToken = "token"
	// targetOther is the target of the remaining front requests (/v2/,
	// tags, catalog, referrers): only TargetAll applies to them.
	targetOther = "other"
)

// Fault is an injected misbehaviour of the front, the token realm or the
// CDN. Faults act on authorised front requests only: a request without a
// valid token still gets its 401.
type Fault struct {
	// Kind is what goes wrong.
	Kind FaultKind
	// Target selects the requests: TargetManifest, TargetBlob,
	// TargetToken or TargetAll.
	Target string
	// Delay is the wait of FaultLatency.
	Delay time.Duration
	// BytesPerSecond is the body rate of FaultBandwidth; 0 or less does
	// not throttle.
	BytesPerSecond int64
	// Count, when positive, applies the fault to the next Count matching
	// requests only, then clears it. Body faults match only requests
	// whose answer has a body (GETs; for blobs, the CDN's GETs).
	Count int
	// Size is the body size of FaultOversize.
	Size int64
	// Announce is the Content-Length FaultOversize announces; 0 or less
	// sends the body chunked, without one.
	Announce int64
}

// SetFault replaces the active fault; the zero Fault clears it. It is safe
// to call while requests are served.
func (h *Hub) SetFault(f Fault) {
	h.mu.Lock()
	h.fault = f
	h.mu.Unlock()
}

// takeFault returns the active fault if it applies to a request of target
// whose answer has a body or not, and spends one of its Count.
func (h *Hub) takeFault(target string, body bool) (Fault, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.fault
	if f.Kind == FaultNone || (f.Target != TargetAll && f.Target != target) || (f.Kind.altersBody() && !body) {
		return Fault{}, false
	}
	if f.Count > 0 {
		h.fault.Count--
		if h.fault.Count == 0 {
			h.fault = Fault{}
		}
	}
	return f, true
}

// applyFault applies the active fault to a request of target. It returns
// the writer to answer through (wrapped by body faults) and whether the
// fault already answered, in which case the caller must stop.
func (h *Hub) applyFault(w http.ResponseWriter, r *http.Request, target string, body bool) (http.ResponseWriter, bool) {
	f, ok := h.takeFault(target, body)
	if !ok {
		return w, false
	}
	h.Counters.Faults.Add(1)
	switch f.Kind {
	case FaultRefuse:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			// Not hijackable (HTTP/2): abort the stream instead.
			panic(http.ErrAbortHandler)
		}
		_ = conn.Close()
		return w, true
	case Fault503:
		writeOCIError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "service unavailable")
		return w, true
	case Fault429:
		h.Counters.TooMany.Add(1)
		w.Header().Set("Retry-After", "7")
		writeOCIError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "too many requests")
		return w, true
	case FaultLatency:
		if !wait(r.Context(), f.Delay) {
			return w, true // the client left
		}
		return w, false
	case FaultBandwidth:
		if f.BytesPerSecond <= 0 {
			return w, false
		}
		return &throttledWriter{ResponseWriter: w, ctx: r.Context(), rate: f.BytesPerSecond, start: time.Now()}, false
	case FaultTruncate, FaultCorrupt, FaultNoBody:
		return &bodyFaultWriter{ResponseWriter: w, kind: f.Kind}, false
	case FaultOversize:
		writeOversize(w, f.Size, f.Announce)
		return w, true
	}
	return w, false
}

// wait waits d, or until ctx ends; it reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// bodyFaultWriter truncates or corrupts a successful answer's body.
type bodyFaultWriter struct {
	http.ResponseWriter
	kind        FaultKind
	wroteHeader bool
	active      bool  // the answer is a 2xx, so the fault applies
	length      int64 // Content-Length, or -1
	written     int64
}

// WriteHeader notes whether the answer is a success and its length.
func (bw *bodyFaultWriter) WriteHeader(status int) {
	if !bw.wroteHeader {
		bw.wroteHeader = true
		bw.active = status >= 200 && status < 300
		bw.length = -1
		if n, err := strconv.ParseInt(bw.Header().Get("Content-Length"), 10, 64); err == nil {
			bw.length = n
		}
	}
	bw.ResponseWriter.WriteHeader(status)
}

// Write passes p on, flipping the middle byte of the body (FaultCorrupt),
// or stopping after half of it and aborting the connection
// (FaultTruncate). Without a Content-Length the middle is that of the
// first write.
func (bw *bodyFaultWriter) Write(p []byte) (int, error) {
	if !bw.wroteHeader {
		bw.WriteHeader(http.StatusOK)
	}
	if !bw.active || len(p) == 0 {
		return bw.ResponseWriter.Write(p)
	}
	mid := bw.length / 2
	if bw.length < 0 {
		mid = bw.written + int64(len(p))/2
		bw.length = 2 * mid // fixes the middle for later writes
	}
	end := bw.written + int64(len(p))
	switch bw.kind {
	case FaultNoBody:
		_ = http.NewResponseController(bw.ResponseWriter).Flush()
		panic(http.ErrAbortHandler)
	case FaultTruncate:
		if end > mid {
			n, _ := bw.ResponseWriter.Write(p[:mid-bw.written])
			bw.written += int64(n)
			_ = http.NewResponseController(bw.ResponseWriter).Flush()
			panic(http.ErrAbortHandler)
		}
	case FaultCorrupt:
		if bw.written <= mid && mid < end {
			q := make([]byte, len(p))
			copy(q, p)
			q[mid-bw.written] ^= 0xff
			p = q
		}
	}
	n, err := bw.ResponseWriter.Write(p)
	bw.written += int64(n)
	return n, err
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (bw *bodyFaultWriter) Unwrap() http.ResponseWriter { return bw.ResponseWriter }

// throttledWriter paces a body at rate bytes per second.
type throttledWriter struct {
	http.ResponseWriter
	ctx   context.Context
	rate  int64
	start time.Time
	sent  int64
}

// Write writes p in slices of a twentieth of a second's worth, flushing
// each and waiting until the pace allows the next.
func (tw *throttledWriter) Write(p []byte) (int, error) {
	chunk := int(max(tw.rate/20, 1))
	total := 0
	for len(p) > 0 {
		n, err := tw.ResponseWriter.Write(p[:min(chunk, len(p))])
		total += n
		tw.sent += int64(n)
		if err != nil {
			return total, err
		}
		p = p[n:]
		_ = http.NewResponseController(tw.ResponseWriter).Flush()
		due := tw.start.Add(time.Duration(float64(tw.sent) / float64(tw.rate) * float64(time.Second)))
		if !wait(tw.ctx, time.Until(due)) {
			return total, tw.ctx.Err()
		}
	}
	return total, nil
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (tw *throttledWriter) Unwrap() http.ResponseWriter { return tw.ResponseWriter }

// writeOversize answers 200 with a JSON object of size bytes, announcing
// announce bytes when positive.
func writeOversize(w http.ResponseWriter, size, announce int64) {
	w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if announce > 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(announce, 10))
	}
	w.WriteHeader(http.StatusOK)
	if size < 2 {
		return
	}
	chunk := bytes.Repeat([]byte{' '}, 64<<10)
	if _, err := w.Write([]byte{'{'}); err != nil {
		return
	}
	for left := size - 2; left > 0; {
		n := min(left, int64(len(chunk)))
		if _, err := w.Write(chunk[:n]); err != nil {
			return
		}
		left -= n
	}
	_, _ = w.Write([]byte{'}'})
}
