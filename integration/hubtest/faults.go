package hubtest

import (
	"net/http"
	"strconv"
	"strings"
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
	// FaultBandwidth caps the body rate of each answer at BytesPerSecond.
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
	// FaultCut sends the full Content-Length of a successful answer, then
	// closes the connection after After bytes of its body: a link that
	// drops every transfer at the same point. It acts on each answer on
	// its own, a Range answer too (After bytes of the range), so with
	// Count 0 a client resuming with Range makes After bytes of progress
	// per request. Answers of After bytes or fewer pass whole.
	FaultCut
	// FaultConnBandwidth caps each TCP connection at BytesPerSecond over
	// all the answers it carries, like a long lossy path caps one TCP
	// flow: N connections in parallel move N times as much.
	FaultConnBandwidth
	// FaultIgnoreRange drops the Range and If-Range headers of a request
	// before it is served, so it is answered 200 with the whole body, as
	// an origin without range support does.
	FaultIgnoreRange
	// FaultWrongRange serves a Range request (bytes=S- or bytes=S-E) for
	// a range starting Shift bytes before S, or Shift bytes after it when
	// S < Shift (the end moves with the start), and answers 206 with a
	// Content-Range that names the range it sent, not the one asked.
	FaultWrongRange
	// FaultExpiry signs the blob redirects of the front with a lifetime
	// of Delay instead of 20 minutes. The CDN refuses an expired URL with
	// 403 and stops a transfer in progress the moment its URL expires,
	// so a client must get a new URL from the front to go on.
	FaultExpiry
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
	case FaultCut:
		return "cut"
	case FaultConnBandwidth:
		return "conn-bandwidth"
	case FaultIgnoreRange:
		return "ignore-range"
	case FaultWrongRange:
		return "wrong-range"
	case FaultExpiry:
		return "expiry"
	default:
		return "fault(" + strconv.Itoa(int(k)) + ")"
	}
}

// altersBody reports whether the fault acts on a response body, or on the
// request for one, so that it applies only to answers that have one.
func (k FaultKind) altersBody() bool {
	switch k {
	case FaultBandwidth, FaultTruncate, FaultCorrupt, FaultNoBody, FaultOversize,
		FaultCut, FaultConnBandwidth, FaultIgnoreRange, FaultWrongRange:
		return true
	}
	return false
}

// Fault targets: which requests a Fault applies to.
const (
	// TargetAll applies a fault to every request of the front, the token
	// realm and the CDN.
	TargetAll = ""
	// TargetManifest applies a fault to manifest GETs and HEADs.
	TargetManifest = "manifest"
	// TargetBlob applies a fault to blob requests of the front and of the
	// CDN. The front answers a blob GET with a redirect (unless
	// Options.DirectBlobs), so body faults act on the CDN's bodies.
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
	// Digest, when set, narrows the fault to the requests for this blob
	// or manifest digest (front requests naming it, CDN GETs of it).
	Digest string
	// Delay is the wait of FaultLatency and the URL lifetime of
	// FaultExpiry.
	Delay time.Duration
	// BytesPerSecond is the body rate of FaultBandwidth and
	// FaultConnBandwidth; 0 or less does not throttle.
	BytesPerSecond int64
	// After is the number of body bytes FaultCut lets through.
	After int64
	// Shift is how far FaultWrongRange moves a range; 0 or less means
	// 4096 bytes.
	Shift int64
	// Count, when positive, applies the fault to the next Count matching
	// requests only, then clears it. Body faults match only requests
	// whose answer has a body (GETs; for blobs, the CDN's GETs).
	Count int
	// Size is the body size of FaultOversize.
	Size int64
	// Announce is the Content-Length FaultOversize announces; 0 or less
	// sends the body chunked, without one.
	Announce int64
	// RangeFrom, when positive, narrows the fault to GETs whose Range
	// header asks for bytes from at least RangeFrom (one range of a
	// download split over several connections, say). With Count, the
	// first such ranges only.
	RangeFrom int64
}

// SetFault replaces the active faults by f; the zero Fault clears them.
// It is safe to call while requests are served. Transfers under way that
// a bandwidth fault paces go on at full speed from then on.
func (h *Hub) SetFault(f Fault) {
	h.mu.Lock()
	h.faultGen++
	h.faults = nil
	if f.Kind != FaultNone {
		h.faults = []Fault{f}
	}
	h.mu.Unlock()
}

// AddFault adds f to the active faults, so that several act at once (a
// cut link that is also slow). A request gets every active fault that
// applies to it, in the order they were added; the first one that answers
// by itself (refuse, 503, 429, oversize) ends the list.
func (h *Hub) AddFault(f Fault) {
	if f.Kind == FaultNone {
		return
	}
	h.mu.Lock()
	h.faults = append(h.faults, f)
	h.mu.Unlock()
}

// faultPoint describes a request a fault may apply to.
type faultPoint struct {
	// target is TargetManifest, TargetBlob, TargetToken or targetOther.
	target string
	// body is set when the answer has a body that faults may act on.
	body bool
	// redirect is set on a front blob GET answered with a signed URL.
	redirect bool
	// digest is the digest a manifest or blob request names, if any.
	digest string
	// rangeFirst is the first byte the request's Range asks for, -1
	// without a Range of bytes.
	rangeFirst int64
}

// rangeFirst returns the first byte of a "bytes=first-..." Range header,
// -1 for anything else.
func rangeFirst(r *http.Request) int64 {
	v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes=")
	a, _, ok2 := strings.Cut(v, "-")
	first, err := strconv.ParseInt(a, 10, 64)
	if !ok || !ok2 || err != nil {
		return -1
	}
	return first
}

// applies reports whether f acts on a request at p.
func (f Fault) applies(p faultPoint) bool {
	switch {
	case f.Kind == FaultNone:
		return false
	case f.Target != TargetAll && f.Target != p.target:
		return false
	case f.Digest != "" && f.Digest != p.digest:
		return false
	case f.RangeFrom > 0 && p.rangeFirst < f.RangeFrom:
		return false
	case f.Kind == FaultExpiry:
		return p.redirect
	case f.Kind.altersBody():
		return p.body
	}
	return true
}

// paced reports whether a transfer that a bandwidth fault began pacing at
// generation gen is still to be paced: SetFault was not called since.
func (h *Hub) paced(gen uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.faultGen == gen
}

// takeFaults returns the active faults that apply to a request at p, and
// spends one of the Count of each, with the generation of the faults.
func (h *Hub) takeFaults(p faultPoint) ([]Fault, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var taken []Fault
	kept := h.faults[:0]
	for _, f := range h.faults {
		if f.applies(p) {
			taken = append(taken, f)
			if f.Count > 0 {
				f.Count--
				if f.Count == 0 {
					continue
				}
			}
		}
		kept = append(kept, f)
	}
	clear(h.faults[len(kept):])
	h.faults = kept
	return taken, h.faultGen
}

// urlLifetime returns the lifetime of a signed blob URL for a front blob
// GET: Delay of an applying FaultExpiry, else cdnLifetime.
func urlLifetime(faults []Fault) time.Duration {
	for _, f := range faults {
		if f.Kind == FaultExpiry && f.Delay > 0 {
			return f.Delay
		}
	}
	return cdnLifetime
}

// applyFaults applies the active faults to a request at p. It returns the
// writer to answer through (wrapped by body faults), the faults applied,
// and whether a fault already answered, in which case the caller must
// stop.
func (h *Hub) applyFaults(w http.ResponseWriter, r *http.Request, p faultPoint) (http.ResponseWriter, []Fault, bool) {
	faults, gen := h.takeFaults(p)
	if len(faults) == 0 {
		return w, nil, false
	}
	h.Counters.Faults.Add(1)
	for _, f := range faults {
		var answered bool
		if w, answered = h.apply(w, r, f, gen); answered {
			return w, faults, true
		}
	}
	return w, faults, false
}

// apply applies one fault of generation gen, as applyFaults does.
func (h *Hub) apply(w http.ResponseWriter, r *http.Request, f Fault, gen uint64) (http.ResponseWriter, bool) {
	paced := func() bool { return h.paced(gen) }
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
	case FaultBandwidth:
		if f.BytesPerSecond > 0 {
			return &pacedWriter{ResponseWriter: w, ctx: r.Context(), chunk: paceChunk(f.BytesPerSecond), due: responseRate(f.BytesPerSecond), paced: paced}, false
		}
	case FaultConnBandwidth:
		if p := connPacerOf(r); p != nil && f.BytesPerSecond > 0 {
			return &pacedWriter{ResponseWriter: w, ctx: r.Context(), chunk: paceChunk(f.BytesPerSecond), due: p.pace(f.BytesPerSecond), paced: paced}, false
		}
	case FaultTruncate, FaultCorrupt, FaultNoBody:
		return &bodyFaultWriter{ResponseWriter: w, kind: f.Kind}, false
	case FaultCut:
		return &cutWriter{ResponseWriter: w, after: max(f.After, 0)}, false
	case FaultIgnoreRange:
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	case FaultWrongRange:
		shiftRange(r.Header, f.Shift)
	case FaultOversize:
		writeOversize(w, f.Size, f.Announce)
		return w, true
	}
	return w, false
}
