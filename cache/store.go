package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/episode"
)

// Errors of the cache.
var (
	// ErrNotFound means the object or tag is not in the cache.
	ErrNotFound = errors.New("not found in cache")
	// ErrDigestMismatch means content did not hash to its digest.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrSizeMismatch means content was longer or shorter than announced.
	ErrSizeMismatch = errors.New("content does not match its expected size")
	// ErrTooLarge means an object is larger than the caller's limit, or a
	// fill larger than the cache budget.
	ErrTooLarge = errors.New("object too large")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("cache closed")
	// ErrBusy means every fill slot stayed taken for the queue timeout.
	ErrBusy = errors.New("too many downloads in progress")
	// ErrSlowFill means the fill a caller joined had no answer from its
	// upstream for Options.SlowSourceAfter.
	ErrSlowFill = errors.New("the download joined is waiting for its upstream")
)

// Defaults of Options.
const (
	// DefaultMemoryBytes is the default hot index budget: 64 MiB.
	DefaultMemoryBytes = 64 << 20
	// DefaultMaxBytes is the disk budget for a deployment that sets none:
	// 10 GiB. (Options.MaxBytes itself has no default: zero is no budget.)
	DefaultMaxBytes int64 = 10 << 30
	// DefaultInlineLimit is the default largest object whose bytes the hot
	// index keeps: 4 MiB.
	DefaultInlineLimit = 4 << 20
	// DefaultAccessFlushInterval is how often last-access times are written
	// by default: one minute.
	DefaultAccessFlushInterval = time.Minute
	// DefaultWriteRetryInterval is how long writes pause after the disk was
	// found full or unwritable, by default: 30 seconds.
	DefaultWriteRetryInterval = 30 * time.Second
	// DefaultMaxFills is the default number of fills that may run at once.
	DefaultMaxFills = 64
	// DefaultFillQueueTimeout is how long a new fill waits for a slot by
	// default: one minute.
	DefaultFillQueueTimeout = time.Minute
	// DefaultFillRetries is how many attempts in a row without progress a
	// fill makes by default before it gives up: 5.
	DefaultFillRetries = 5
	// DefaultFillRetryBackoff is the default pause after a fill's first
	// attempt without progress (it doubles with each further one): 500ms.
	DefaultFillRetryBackoff = 500 * time.Millisecond
	// DefaultFillConnections is how many connections a large fill uses by
	// default: 4.
	DefaultFillConnections = 4
	// DefaultFillSplitSize is the size from which a fill uses several
	// connections by default: 32 MiB.
	DefaultFillSplitSize = 32 << 20
	// DefaultFillSplitAfter is how long the first stream of a large fill
	// runs by default before the other connections start: 250ms.
	DefaultFillSplitAfter = 250 * time.Millisecond
	// DefaultSlowSourceAfter is how long a fill waits for a byte from its
	// source by default before it turns to another one, when it has
	// another: 10 seconds.
	DefaultSlowSourceAfter = 10 * time.Second
	// DefaultSlowSourceRate is the rate under which a fill turns to
	// another source it has, by default: 2 MiB/s (see
	// Options.SlowSourceRate).
	DefaultSlowSourceRate = 2 << 20
	// DefaultIngestMaxBytes is how many bytes of partial downloads the
	// ingest area keeps by default: 4 GiB.
	DefaultIngestMaxBytes = 4 << 30
	// DefaultIngestMaxAge is how long a partial download is kept by
	// default: 24 hours.
	DefaultIngestMaxAge = 24 * time.Hour
)

// Options configure a Store; zero values mean defaults.
type Options struct {
	// Dir is the root directory, created if missing. Required.
	Dir string
	// MemoryBytes is the hot index budget in bytes. Default: 64 MiB.
	MemoryBytes int64
	// InlineLimit is the largest object whose bytes the hot index keeps
	// (manifests). Default: 4 MiB.
	InlineLimit int64
	// Logger receives the store's logs. Default: a no-op logger.
	Logger *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// AccessFlushInterval is how often batched last-access times are
	// written to the metadata store. Default: 1m.
	AccessFlushInterval time.Duration
	// MaxBytes is the disk budget of the stored objects: beyond it, the
	// least recently used objects that nobody is reading are evicted, and
	// a fill larger than it fails with ErrTooLarge (the caller streams the
	// object past the cache). Zero or less: no budget.
	MaxBytes int64
	// MaxIdle evicts objects nobody read for this long (see EvictIdle),
	// alongside MaxBytes; pinned objects stay. Zero or less: none.
	MaxIdle time.Duration
	// WriteRetryInterval is how long the store stops writing after the disk
	// was found full or unwritable; content is served without being stored
	// meanwhile. Writing resumes earlier when the file system shows 1 MiB
	// free again (checked once a second at most). Default: 30s.
	WriteRetryInterval time.Duration
	// MaxFills bounds the fills (upstream downloads) running at once, and
	// with them the file descriptors and upstream connections a flood of
	// distinct cold requests can take. A fill beyond it waits for a slot;
	// joining a fill in progress needs none. Default: 64.
	MaxFills int
	// FillQueueTimeout is how long a new fill waits for a slot before Fill
	// gives up with ErrBusy. Default: 1m.
	FillQueueTimeout time.Duration
	// Dependent keeps records about the stored objects in meta.db (see
	// Dependent): Open attaches it before any object can go, and every
	// removal drops its records of the object with the object. Default:
	// none.
	Dependent Dependent
	// Sources opens the bodies of fills in place of their fetch (see
	// SourceProvider), for a tier that several nodes share. Fills through
	// it start from the first byte (no partial download is kept for a
	// later fill), are asked for in one piece (SplitSize is 0) and are not
	// judged by their rate (the provider paces them). Default: none, a
	// fill's fetch brings its body.
	Sources SourceProvider
	// ScrubInterval is how often a background pass hashes every stored
	// object against its digest, removing the corrupt ones (logged at
	// Error, counted); a pass interrupted by a restart resumes where it
	// stopped. Default: DefaultScrubInterval (7 days). Negative: no
	// scrub.
	ScrubInterval time.Duration
	// ScrubRate bounds the scrub's reads in bytes per second. Default:
	// DefaultScrubRate (50 MiB/s). Negative: no bound.
	ScrubRate int64
	// FillRetries is how many attempts in a row a fill makes without
	// progress after its body broke (reset, stall, early end, an expired
	// signed URL) before it gives up. Each attempt continues from the bytes
	// the fill has, with a range; an attempt that got further than any
	// before does not count. Default: 5.
	FillRetries int
	// FillRetryBackoff is the pause after a fill's first attempt without
	// progress; it doubles with each further one, up to 30s. Default:
	// 500ms.
	FillRetryBackoff time.Duration
	// FillConnections is how many ranges a fill of at least FillSplitSize
	// bytes fetches at once, each over its own connection, when its
	// source can fetch ranges (Source.Segment); 1 fetches every fill in
	// one stream. Default: 4.
	FillConnections int
	// FillSplitSize is the size from which a fill is fetched in ranges.
	// Default: 32 MiB.
	FillSplitSize int64
	// FillSplitAfter is how long the first stream of a fill of at least
	// FillSplitSize bytes runs before the further connections start: a
	// link that brings the first range (FetchFunc) sooner is fast enough
	// that more connections would only cost CPU, and the fill goes on in
	// one stream. Default: 250ms.
	FillSplitAfter time.Duration
	// SlowSourceAfter is how long a fill's body may send nothing while
	// other sources of the content are there (clients of other upstreams
	// or credentials that joined the fill, see Reader.AddSource) before
	// the fill drops it and continues from the next source; and how long a
	// caller that joins a fill waits for that fill's upstream to answer
	// before Fill returns ErrSlowFill. Default: 10s.
	SlowSourceAfter time.Duration
	// SlowSourceRate is the rate, in bytes per second over the last
	// second, under which a fill's body counts as slow when the fill has
	// another source to try (an endpoint of the same upstream that is not
	// in its failure cooldown, or a source a joining client added) that it
	// has not tried yet: the fill then continues from that source at the
	// byte it reached. A body is also slow, whatever this rate, under a
	// quarter of the best rate any source of the fill showed. A body is
	// first judged after a full second, a fill turns away from slow sources
	// at most a few times (it keeps the faster), and such a switch never
	// counts against FillRetries. The default, 2 MiB/s, is about a 16
	// Mbit/s line: far below what a registry or CDN serves one connection
	// on a working path, while a link slower than that throughout finds
	// every endpoint slow and costs one extra request. Not applied through
	// Sources, which paces what it streams (a shared tier, from another
	// node).
	// Default: 2 MiB/s.
	SlowSourceRate int64
	// IngestMaxBytes bounds the partial downloads kept for a later fill
	// of their digest to continue (a fill that gave up, or was stopped by
	// Close): beyond it the oldest are removed. Default: 4 GiB.
	IngestMaxBytes int64
	// IngestMaxAge is how long a partial download is kept. Default: 24h.
	IngestMaxAge time.Duration
}

// WithDefaults returns o with the default of every field left zero (or,
// where the field says so, zero or less) filled in: the values Open runs
// with. MaxBytes, MaxIdle, Dependent and Sources have no default; a
// negative ScrubInterval (no scrub) or ScrubRate (no bound) is kept.
func (o Options) WithDefaults() Options {
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = DefaultMemoryBytes
	}
	if o.InlineLimit <= 0 {
		o.InlineLimit = DefaultInlineLimit
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AccessFlushInterval <= 0 {
		o.AccessFlushInterval = DefaultAccessFlushInterval
	}
	if o.WriteRetryInterval <= 0 {
		o.WriteRetryInterval = DefaultWriteRetryInterval
	}
	if o.MaxFills <= 0 {
		o.MaxFills = DefaultMaxFills
	}
	if o.FillQueueTimeout <= 0 {
		o.FillQueueTimeout = DefaultFillQueueTimeout
	}
	if o.FillRetries <= 0 {
		o.FillRetries = DefaultFillRetries
	}
	if o.FillRetryBackoff <= 0 {
		o.FillRetryBackoff = DefaultFillRetryBackoff
	}
	if o.FillConnections <= 0 {
		o.FillConnections = DefaultFillConnections
	}
	if o.FillSplitSize <= 0 {
		o.FillSplitSize = DefaultFillSplitSize
	}
	if o.FillSplitAfter <= 0 {
		o.FillSplitAfter = DefaultFillSplitAfter
	}
	if o.SlowSourceAfter <= 0 {
		o.SlowSourceAfter = DefaultSlowSourceAfter
	}
	if o.SlowSourceRate <= 0 {
		o.SlowSourceRate = DefaultSlowSourceRate
	}
	if o.IngestMaxBytes <= 0 {
		o.IngestMaxBytes = DefaultIngestMaxBytes
	}
	if o.IngestMaxAge <= 0 {
		o.IngestMaxAge = DefaultIngestMaxAge
	}
	if o.ScrubInterval == 0 {
		o.ScrubInterval = DefaultScrubInterval
	}
	if o.ScrubRate == 0 {
		o.ScrubRate = DefaultScrubRate
	}
	return o
}

// Object is the metadata of one verified object.
type Object struct {
	// Digest identifies the content.
	Digest digest.Digest
	// Size is the content length in bytes.
	Size int64
	// MediaType is the media type recorded with the content; empty when
	// unknown.
	MediaType string
}

// Store is the cache of one directory: verified content on disk, its
// metadata in meta.db, a hot index in memory, and the fills in progress.
// It is safe for concurrent use.
type Store struct {
	dir, blobsDir, ingestDir string
	db                       *bolt.DB
	index                    *ristretto.Cache[string, *entry]
	inlineLimit              int64
	log                      *zap.Logger
	now                      func() time.Time
	// sources opens fills' bodies (nil: their fetch does); through it,
	// downloads are neither kept for a later fill (keepPartials false)
	// nor split from their first range (wholeFirst), and their rate is
	// not judged (paced).
	sources                         SourceProvider
	keepPartials, wholeFirst, paced bool
	// overBudget logs the passes that cannot bring the cache within its
	// budget, once per episode; fillFailed the fills whose body broke off
	// or did not verify (a flaky upstream).
	overBudget, fillFailed *episode.Log

	// life guards the index and meta.db against Close: operations hold
	// it for reading, Close for writing, so nothing touches them while
	// they close.
	life   sync.RWMutex
	closed bool // under life

	ctx    context.Context // ends at Close; fills run on it
	cancel context.CancelFunc
	wg     sync.WaitGroup // fills and the access flusher

	mu               sync.Mutex
	fills            map[digest.Digest]*fill
	fillSlots        chan struct{} // one token per running fill
	slotFreed        chan struct{} // closed and replaced when a slot frees; under mu
	fillQueueTimeout time.Duration
	fillRetries      int
	fillBackoff      time.Duration
	ingestMaxBytes   int64
	fillConnections  int
	fillSplitSize    int64
	slowSource       time.Duration
	slowRate         int64
	// inlineHash hashes a fill on its copying goroutine, as before the
	// hash pipe; set by benchmarks only, to compare.
	inlineHash     bool
	fillSplitAfter time.Duration
	ingestMaxAge   time.Duration

	fillResumes       atomic.Int64
	fillRestarts      atomic.Int64
	fillSplits        atomic.Int64
	prefetches        atomic.Int64
	sourceSwitches    atomic.Int64
	partialsContinued atomic.Int64

	access accessLog

	// The budget: see budget.go.
	maxBytes        atomic.Int64
	writeRetry      time.Duration
	objects         atomic.Int64
	used            atomic.Int64
	reserved        atomic.Int64
	evictions       atomic.Int64
	evictedBytes    atomic.Int64
	notStored       atomic.Int64
	writeFailures   atomic.Int64
	unwritableUntil atomic.Int64 // Unix nanoseconds; 0 when writable
	spaceChecked    atomic.Int64 // Unix nanoseconds of the last free-space check
	evictWake       chan struct{}

	useMu sync.Mutex
	inUse map[digest.Digest]int // readers per object

	// Retention: see retention.go.
	pinMu         sync.Mutex
	pins          map[string]map[digest.Digest]struct{} // owner -> pinned objects; under pinMu
	maxIdle       atomic.Int64                          // nanoseconds; 0: none
	idleWake      chan struct{}
	idleEvictions atomic.Int64

	// removeMu orders removals (eviction, Delete) against the
	// reconciliation's dropping of records without files.
	removeMu sync.Mutex

	// integ is what is known of the content at rest: see integrity.go.
	integ integrity

	// dependent keeps records about the objects (nil: none); set by Open.
	dependent Dependent
}

// Open opens (creating if needed) the cache in opts.Dir, removes leftovers
// of interrupted writes (keeping the partial downloads a later fill
// continues, within their limits), and starts the background work:
// the access flusher, the evictor, and the reconciliation of the metadata
// with the disk (the store serves meanwhile). A second Open of a directory
// that is already open, by this process or another, fails after a second.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("opening cache: a directory is required")
	}
	opts = opts.WithDefaults()
	s := &Store{
		dir:         opts.Dir,
		blobsDir:    filepath.Join(opts.Dir, "blobs"),
		ingestDir:   filepath.Join(opts.Dir, "ingest"),
		inlineLimit: opts.InlineLimit,
		log:         opts.Logger,
		now:         opts.Now,
		sources:     opts.Sources,
		fills:       make(map[digest.Digest]*fill),
		writeRetry:  opts.WriteRetryInterval,
		evictWake:   make(chan struct{}, 1),
		fillSlots:   make(chan struct{}, opts.MaxFills),
		slotFreed:   make(chan struct{}),

		fillQueueTimeout: opts.FillQueueTimeout,
		fillRetries:      opts.FillRetries,
		fillBackoff:      opts.FillRetryBackoff,
		ingestMaxBytes:   opts.IngestMaxBytes,
		fillConnections:  opts.FillConnections,
		fillSplitSize:    opts.FillSplitSize,
		slowSource:       opts.SlowSourceAfter,
		slowRate:         opts.SlowSourceRate,
		fillSplitAfter:   opts.FillSplitAfter,
		ingestMaxAge:     opts.IngestMaxAge,
		inUse:            make(map[digest.Digest]int),
		pins:             make(map[string]map[digest.Digest]struct{}),
		idleWake:         make(chan struct{}, 1),

		keepPartials: opts.Sources == nil,
		wholeFirst:   opts.Sources != nil,
		paced:        opts.Sources != nil,
	}
	s.overBudget = episode.New(opts.Logger, zapcore.WarnLevel, "cache over budget: what remains is being read, filled or pinned by sync rules",
		episode.Options{Now: opts.Now})
	s.fillFailed = episode.New(opts.Logger, zapcore.WarnLevel, "fill failed", episode.Options{Now: opts.Now})
	if err := os.MkdirAll(s.blobsDir, 0o755); err != nil {
		return nil, fmt.Errorf("opening cache: creating %s: %w", s.blobsDir, err)
	}
	db, err := openMeta(filepath.Join(opts.Dir, "meta.db"))
	if err != nil {
		return nil, err
	}
	s.db = db
	// Before any background work can remove an object.
	if opts.Dependent != nil {
		if err := opts.Dependent.Attach(s); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("opening cache: %w", err)
		}
		s.dependent = opts.Dependent
	}
	// Only the holder of meta.db's lock may sweep the ingest area: it
	// keeps the partial downloads a later fill continues.
	if err := os.MkdirAll(s.ingestDir, 0o755); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening cache: creating %s: %w", s.ingestDir, err)
	}
	s.sweepIngest(true)
	if err := s.loadUsage(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.index, err = newIndex(opts.MemoryBytes)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.maxBytes.Store(opts.MaxBytes)
	s.maxIdle.Store(int64(opts.MaxIdle))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.access.init()
	s.integ.init()
	s.startBackground(opts.AccessFlushInterval)
	s.startScrub(opts.ScrubInterval, opts.ScrubRate)
	s.triggerEvictIfOver()
	return s, nil
}

// Dir returns the cache's root directory.
func (s *Store) Dir() string { return s.dir }

// enter starts an operation that uses the index or meta.db; it reports
// false once the store is closed. A true result must be paired with leave.
func (s *Store) enter() bool {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return false
	}
	return true
}

// leave ends an operation started by enter.
func (s *Store) leave() { s.life.RUnlock() }

// Close stops running fills (their readers fail with ErrClosed), writes
// the pending access times, and closes the metadata store and the index.
// Closing a closed Store does nothing.
func (s *Store) Close() error {
	// Cancel first: a reconciliation or eviction pass holds the store
	// entered and stops only when it sees the context end.
	s.cancel()
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return nil
	}
	s.closed = true
	s.life.Unlock()

	s.wg.Wait()
	err := s.flushAccess()
	if err != nil {
		err = fmt.Errorf("closing cache: %w", err)
	}
	s.index.Close()
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing cache: closing metadata: %w", cerr)
	}
	return err
}

// Stat returns the metadata of a verified object, or ErrNotFound, and
// counts as a use of it.
func (s *Store) Stat(d digest.Digest) (Object, error) {
	return s.stat(d, true)
}

// Inspect is Stat for reports: it does not count as a use, so listing the
// cache does not change what eviction takes.
func (s *Store) Inspect(d digest.Digest) (Object, error) {
	return s.stat(d, false)
}

// stat is Stat, recording the use when touch is set.
func (s *Store) stat(d digest.Digest, touch bool) (Object, error) {
	if !s.enter() {
		return Object{}, ErrClosed
	}
	defer s.leave()
	if e, ok := s.lookup(d); ok {
		if touch {
			s.access.touch(d, s.now())
		}
		return e.obj, nil
	}
	path, err := s.blobPath(d)
	if err != nil {
		return Object{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Object{}, notFound(d, err)
	}
	obj := s.objectFromDisk(d, fi.Size())
	s.setIndex(obj, nil)
	if touch {
		s.access.touch(d, s.now())
	}
	return obj, nil
}

// Open returns a reader of the verified object d (Complete, with its
// File), or ErrNotFound. The caller closes the reader; until then the
// object is not evicted. ctx bounds nothing for a stored object; it is
// kept for the reader's interface.
func (s *Store) Open(ctx context.Context, d digest.Digest) (*Reader, error) {
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.leave()
	f, obj, err := s.open(d)
	if err != nil {
		return nil, err
	}
	return s.completeReader(ctx, f, obj), nil
}

// open is Open for callers that entered already.
func (s *Store) open(d digest.Digest) (*os.File, Object, error) {
	path, err := s.blobPath(d)
	if err != nil {
		return nil, Object{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, Object{}, notFound(d, err)
	}
	var obj Object
	if e, ok := s.lookup(d); ok {
		obj = e.obj
	} else {
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, Object{}, fmt.Errorf("opening %s: %w", d, err)
		}
		obj = s.objectFromDisk(d, fi.Size())
		s.setIndex(obj, nil)
	}
	s.access.touch(d, s.now())
	return f, obj, nil
}

// ReadAll returns the content of a small object (a manifest) and its
// metadata: from the hot index when it holds the bytes, else from disk
// (and then keeps them in the index). An object larger than limit is
// ErrTooLarge. The returned bytes are shared: the caller must not modify
// them.
func (s *Store) ReadAll(d digest.Digest, limit int64) ([]byte, Object, error) {
	return s.readAll(d, limit, true)
}

// InspectContent is ReadAll for reports: it does not count as a use.
func (s *Store) InspectContent(d digest.Digest, limit int64) ([]byte, Object, error) {
	return s.readAll(d, limit, false)
}

// readAll is ReadAll, recording the use when touch is set.
func (s *Store) readAll(d digest.Digest, limit int64, touch bool) ([]byte, Object, error) {
	if !s.enter() {
		return nil, Object{}, ErrClosed
	}
	defer s.leave()
	e, hit := s.lookup(d)
	if hit && e.obj.Size > limit {
		return nil, Object{}, fmt.Errorf("reading %s: %d bytes: %w", d, e.obj.Size, ErrTooLarge)
	}
	if hit && e.data != nil {
		if touch {
			s.access.touch(d, s.now())
		}
		return e.data, e.obj, nil
	}
	path, err := s.blobPath(d)
	if err != nil {
		return nil, Object{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, Object{}, notFound(d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, Object{}, fmt.Errorf("reading %s: %w", d, err)
	}
	if fi.Size() > limit {
		return nil, Object{}, fmt.Errorf("reading %s: %d bytes: %w", d, fi.Size(), ErrTooLarge)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, Object{}, fmt.Errorf("reading %s: %w", d, err)
	}
	if !s.intact(d, fi, data) {
		return nil, Object{}, fmt.Errorf("reading %s: %w", d, ErrNotFound)
	}
	var obj Object
	if hit {
		obj = e.obj
	} else {
		obj = s.objectFromDisk(d, fi.Size())
	}
	s.setIndex(obj, data)
	if touch {
		s.access.touch(d, s.now())
	}
	return data, obj, nil
}

// Put stores small content (a manifest) after verifying it against d
// (ErrDigestMismatch). It does nothing when d is already stored, except
// record mediaType when the stored one is empty. While the disk is full or
// unwritable it fails with an error wrapping ErrUnwritable.
func (s *Store) Put(d digest.Digest, mediaType string, data []byte) error {
	_, err := s.Add(d, mediaType, data)
	return err
}

// Add is Put that also reports whether the content was new to the disk.
func (s *Store) Add(d digest.Digest, mediaType string, data []byte) (bool, error) {
	if err := d.Validate(); err != nil {
		return false, fmt.Errorf("storing %q: %w: %w", d, ErrDigestMismatch, err)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return false, fmt.Errorf("storing %s: content hashes to %s: %w", d, got, ErrDigestMismatch)
	}
	return s.putLocal(d, mediaType, data)
}

// putLocal is Put on the local disk, for verified data; it reports
// whether the content was new to the disk.
func (s *Store) putLocal(d digest.Digest, mediaType string, data []byte) (bool, error) {
	if !s.enter() {
		return false, ErrClosed
	}
	defer s.leave()
	obj := Object{Digest: d, Size: int64(len(data)), MediaType: mediaType}
	path, err := s.blobPath(d)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(path); err == nil {
		m, ok := s.readObjectMeta(d)
		if ok && m.MediaType != "" {
			obj.MediaType = m.MediaType
		} else if mediaType != "" {
			if err := s.writeObjectMeta(obj); err != nil {
				return false, fmt.Errorf("storing %s: %w", d, err)
			}
			// The index ignores a Set while an earlier Set of the key is
			// buffered; a Del first makes the new media type stick.
			s.index.Del(string(d))
		}
		s.setIndex(obj, data)
		return false, nil
	}
	if !s.writable() {
		s.notStored.Add(1)
		return false, fmt.Errorf("storing %s: %w", d, ErrUnwritable)
	}
	// In use while it commits, so that the reconciliation after a start
	// does not take its record for a crash's leftover.
	defer s.use(d)()
	tmp, err := os.CreateTemp(s.ingestDir, d.Encoded()+"-*")
	if err != nil {
		return false, fmt.Errorf("storing %s: %w", d, s.noteWriteError("creating a file", err))
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return false, fmt.Errorf("storing %s: writing: %w", d, s.noteWriteError("writing", err))
	}
	if err := s.commit(tmp, obj); err != nil {
		_ = os.Remove(tmp.Name())
		return false, err
	}
	s.markVerified(d)
	s.setIndex(obj, data)
	return true, nil
}

// objectFromDisk builds an object's metadata from its file size and the
// metadata store; a file without metadata gets an empty media type.
func (s *Store) objectFromDisk(d digest.Digest, size int64) Object {
	obj := Object{Digest: d, Size: size}
	if m, ok := s.readObjectMeta(d); ok {
		obj.MediaType = m.MediaType
	}
	return obj
}
