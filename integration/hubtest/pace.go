package hubtest

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

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

// paceChunk is the slice of a paced body written at once: a twentieth of
// a second's worth at rate, at least one byte.
func paceChunk(rate int64) int { return int(max(rate/20, 1)) }

// pacedWriter writes a body in slices, flushing each and waiting until
// its pace allows the next.
type pacedWriter struct {
	http.ResponseWriter
	ctx   context.Context
	chunk int
	// due books n more bytes and returns when they have left.
	due func(n int) time.Time
	// paced reports whether the pace still holds; once it does not, the
	// rest of the body goes at full speed.
	paced func() bool
}

// responseRate returns the pace of FaultBandwidth: rate bytes per second
// from now on, for one answer.
func responseRate(rate int64) func(int) time.Time {
	start, sent := time.Now(), int64(0)
	return func(n int) time.Time {
		sent += int64(n)
		return start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
	}
}

// Write writes p in slices of chunk bytes, flushing each and waiting
// until it is due.
func (pw *pacedWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		if !pw.paced() {
			n, err := pw.ResponseWriter.Write(p)
			return total + n, err
		}
		n, err := pw.ResponseWriter.Write(p[:min(pw.chunk, len(p))])
		total += n
		if err != nil {
			return total, err
		}
		p = p[n:]
		_ = http.NewResponseController(pw.ResponseWriter).Flush()
		if !wait(pw.ctx, time.Until(pw.due(n))) {
			return total, pw.ctx.Err()
		}
	}
	return total, nil
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (pw *pacedWriter) Unwrap() http.ResponseWriter { return pw.ResponseWriter }

// connPacerKey is the context key of a connection's pacer.
type connPacerKey struct{}

// connPacer spaces the bytes sent on one TCP connection, over all the
// answers it carries, for FaultConnBandwidth.
type connPacer struct {
	mu   sync.Mutex
	next time.Time // when the bytes sent so far have left at the capped rate
}

// withConnPacer gives each accepted connection its own pacer
// (http.Server.ConnContext).
func withConnPacer(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connPacerKey{}, &connPacer{})
}

// connPacerOf returns the pacer of the connection r arrived on.
func connPacerOf(r *http.Request) *connPacer {
	p, _ := r.Context().Value(connPacerKey{}).(*connPacer)
	return p
}

// paceSlack is how late a paced write may come and still be counted from
// when the bytes before it left: the oversleep of timers and the time of
// the writes themselves are made up, so the rate holds; a connection idle
// for longer starts afresh instead of saving the time up for a burst.
const paceSlack = 100 * time.Millisecond

// reserve books n bytes at rate bytes per second on the connection and
// returns when they have left.
func (p *connPacer) reserve(n int, rate int64) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	if p.next.After(start.Add(-paceSlack)) {
		start = p.next
	}
	p.next = start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	return p.next
}

// pace returns the pace of FaultConnBandwidth on this connection.
func (p *connPacer) pace(rate int64) func(int) time.Time {
	return func(n int) time.Time { return p.reserve(n, rate) }
}

// Interface guards
var _ http.ResponseWriter = (*pacedWriter)(nil)
