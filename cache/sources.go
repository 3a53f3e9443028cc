package cache

// A fill takes its bytes from its own fetch and from the sources that
// clients joining it add (Reader.AddSource), and its own fetch may reach
// several endpoints of one upstream (Source.Demote). It turns to another
// source, from the byte it reached, when the current one fails, sends
// nothing for a while, or sends slowly: under Options.SlowSourceRate while
// a source it has not tried is there, or under a quarter of the best rate
// any source showed. Through a SourceProvider only failures and silence
// count, as the provider paces what it streams (a shared tier, from
// another node).

import (
	"fmt"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// rateWindow is the span over which a fill measures the rate of its body;
// a body is judged only once it has run that long.
const rateWindow = time.Second

// maxSlowSwitches bounds how often one fill turns away from a source for
// its slowness, so that sources of alike rates never take turns.
const maxSlowSwitches = 4

// nextSource makes the next attempt use the fill's next source. A fill
// split into ranges goes on in one stream: the workers fetch from the
// source that failed.
func (t *transfer) nextSource() {
	t.source++
	t.switched()
}

// switched counts a change of source and stops the workers of a split,
// or drops a split not started yet: the next source sends the rest of
// the content in one stream.
func (t *transfer) switched() {
	t.s.sourceSwitches.Add(1)
	t.stopSegments()
	t.segment, t.limit = nil, 0
	if c := t.s.log.Check(zapcore.DebugLevel, "fill switching source"); c != nil {
		c.Write(zap.String("digest", t.fl.d.String()), zap.Int64("offset", t.pos), zap.Int("source", t.source))
	}
}

// rateSample is how many bytes the fill's bodies had brought at a time.
type rateSample struct {
	at    time.Time
	moved int64
}

// watch watches src's body until done closes. It drops the body, marking
// the attempt slow, when the body sends nothing for the store's
// slow-source time while the fill has other sources, or when it sends
// slowly (see slowRate) and another source is there: another endpoint of
// the same fetch (src.Demote, the attempt is then marked demoted) or a
// source added to the fill. tried is the highest source index the fill
// has used.
func (t *transfer) watch(src Source, done <-chan struct{}, tried int) {
	tick := time.NewTicker(min(t.s.slowSource, rateWindow) / 4)
	defer tick.Stop()
	var meter rateMeter
	meter.add(time.Now(), t.moved.Load())
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			idle := now.Sub(time.Unix(0, t.lastByte.Load()))
			if idle >= t.s.slowSource && t.fl.hasOtherSources() {
				t.slow.Store(true)
				_ = src.Body.Close()
				return
			}
			rate, ok := meter.add(now, t.moved.Load())
			if t.s.paced {
				// The provider (a shared tier) streams another node's
				// download as it lands, in pauses: its rate says nothing
				// of the link, and leaving it would take the fill past the
				// bucket.
				continue
			}
			if ok {
				t.raiseBest(rate)
			}
			if !ok || t.slowSwitches.Load() >= maxSlowSwitches {
				continue
			}
			muchSlower := rate < t.best.Load()/4
			if !muchSlower && rate >= t.s.slowRate {
				continue
			}
			why := fmt.Sprintf("%d bytes/s over the last %s", rate, rateWindow)
			untried := tried < t.fl.sourceCount()-1
			switch {
			case src.Demote != nil && src.Demote(why):
				t.demoted.Store(true)
			case t.fl.hasOtherSources() && (muchSlower || untried):
			default:
				continue
			}
			if c := t.s.log.Check(zapcore.DebugLevel, "fill source too slow"); c != nil {
				c.Write(zap.String("digest", t.fl.d.String()), zap.Int64("bytes_per_second", rate),
					zap.Int64("best_bytes_per_second", t.best.Load()))
			}
			t.slow.Store(true)
			_ = src.Body.Close()
			return
		}
	}
}

// rateMeter measures the rate of one stream over the last rateWindow
// from samples of the bytes it moved.
type rateMeter struct{ samples []rateSample }

// add takes a sample and returns the rate over the window, in bytes per
// second; ok is false until the samples span rateWindow.
func (m *rateMeter) add(now time.Time, moved int64) (rate int64, ok bool) {
	m.samples = append(m.samples, rateSample{at: now, moved: moved})
	for len(m.samples) > 2 && now.Sub(m.samples[1].at) >= rateWindow {
		m.samples = m.samples[1:]
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	span := last.at.Sub(first.at)
	if span < rateWindow {
		return 0, false
	}
	return int64(float64(last.moved-first.moved) / span.Seconds()), true
}

// raiseBest raises the best rate the fill's main stream showed to rate.
func (t *transfer) raiseBest(rate int64) {
	for {
		best := t.best.Load()
		if rate <= best || t.best.CompareAndSwap(best, rate) {
			return
		}
	}
}
