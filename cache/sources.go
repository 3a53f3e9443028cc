package cache

// A fill takes its bytes from its own fetch and from the sources that
// clients joining it add (Reader.AddSource): the next one when the
// current fails, or sends nothing for a while.

import (
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// nextSource makes the next attempt use the fill's next source. A fill
// split into ranges goes on in one stream: the workers fetch from the
// source that failed.
func (t *transfer) nextSource() {
	t.source++
	t.s.sourceSwitches.Add(1)
	t.stopSegments()
	if c := t.s.log.Check(zapcore.DebugLevel, "fill switching source"); c != nil {
		c.Write(zap.String("digest", t.fl.d.String()), zap.Int64("offset", t.pos))
	}
}

// watch drops body when it sends nothing for the store's slow-source time
// while the fill has other sources, marking the attempt slow; it returns
// when done closes.
func (t *transfer) watch(body io.Closer, done <-chan struct{}) {
	tick := time.NewTicker(min(t.s.slowSource/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			idle := now.Sub(time.Unix(0, t.lastByte.Load()))
			if idle >= t.s.slowSource && t.fl.hasOtherSources() {
				t.slow.Store(true)
				_ = body.Close()
				return
			}
		}
	}
}
