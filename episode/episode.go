package episode

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultInterval is the least time between two lines of one episode when
// Options.Interval is zero.
const DefaultInterval = time.Minute

// Options tune a Log; zero values mean defaults.
type Options struct {
	// Interval is the least time between two lines of one episode, and
	// the quiet time after which the next occurrence begins a new episode
	// (the old one is then logged as ended). Default: DefaultInterval.
	Interval time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// WithDefaults returns o with the default of every field left zero (or,
// for Interval, less) filled in: the values New runs with.
func (o Options) WithDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Log reports one lasting condition. It is safe for concurrent use.
type Log struct {
	log   *zap.Logger
	level zapcore.Level
	msg   string
	opts  Options // with its defaults

	mu       sync.Mutex
	active   bool
	total    int64 // occurrences in the episode
	unlogged int64 // occurrences since the last line
	started  time.Time
	lastLine time.Time
	lastSeen time.Time
}

// New returns a Log that writes msg to log at level (the end of an
// episode at Info).
func New(log *zap.Logger, level zapcore.Level, msg string, opts Options) *Log {
	l := &Log{log: log, level: level, msg: msg, opts: opts.WithDefaults()}
	if l.log == nil {
		l.log = zap.NewNop()
	}
	return l
}

// line is a log line decided under the lock and written after it.
type line struct {
	level  zapcore.Level
	msg    string
	fields []zap.Field
}

// Event records one occurrence with its details. The first of an episode
// is logged with fields; later ones are counted, and logged (the same
// message with the latest details, the count since the last line and the
// time since the episode began) at most once per interval.
func (l *Log) Event(fields ...zap.Field) {
	now := l.opts.Now()
	var lines []line
	l.mu.Lock()
	if l.active && now.Sub(l.lastSeen) >= l.opts.Interval {
		// Quiet for an interval: that episode ended unnoticed.
		lines = append(lines, l.endLocked(l.lastSeen, nil))
	}
	l.lastSeen = now
	switch {
	case !l.active:
		l.active, l.total, l.unlogged, l.started, l.lastLine = true, 1, 0, now, now
		lines = append(lines, line{l.level, l.msg, fields})
	default:
		l.total++
		l.unlogged++
		if now.Sub(l.lastLine) >= l.opts.Interval {
			lines = append(lines, line{l.level, l.msg, append(fields,
				zap.Int64("count", l.unlogged), zap.Duration("since_start", now.Sub(l.started)))})
			l.unlogged, l.lastLine = 0, now
		}
	}
	l.mu.Unlock()
	l.write(lines)
}

// End ends the episode, if one is under way: it is logged at Info with
// the count of its occurrences and its duration.
func (l *Log) End(fields ...zap.Field) {
	l.mu.Lock()
	if !l.active {
		l.mu.Unlock()
		return
	}
	ln := l.endLocked(l.opts.Now(), fields)
	l.mu.Unlock()
	l.write([]line{ln})
}

// endLocked ends the episode at the time at and returns its last line.
func (l *Log) endLocked(at time.Time, fields []zap.Field) line {
	l.active = false
	return line{zapcore.InfoLevel, l.msg + ": ended", append(fields,
		zap.Int64("count", l.total), zap.Duration("duration", at.Sub(l.started)))}
}

// Active reports whether an episode is under way.
func (l *Log) Active() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// write writes lines in order.
func (l *Log) write(lines []line) {
	for _, ln := range lines {
		if ce := l.log.Check(ln.level, ln.msg); ce != nil {
			ce.Write(ln.fields...)
		}
	}
}
