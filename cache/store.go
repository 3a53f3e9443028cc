package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Errors of the cache.
var (
	// ErrNotFound means the object or tag is not in the cache.
	ErrNotFound = errors.New("not found in cache")
	// ErrDigestMismatch means content did not hash to its digest.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrSizeMismatch means content was longer or shorter than announced.
	ErrSizeMismatch = errors.New("content does not match its expected size")
	// ErrTooLarge means an object is larger than the caller's limit.
	ErrTooLarge = errors.New("object too large")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("cache closed")
)

// Defaults of Options.
const (
	DefaultMemoryBytes         = 64 << 20
	DefaultInlineLimit         = 4 << 20
	DefaultAccessFlushInterval = time.Minute
)

// Options configure a Store; zero values mean defaults.
type Options struct {
	// Dir is the root directory, created if missing.
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
}

// Object is the metadata of one verified object.
type Object struct {
	Digest    digest.Digest
	Size      int64
	MediaType string
}

// entry is a hot index value; it carries its own identity because the
// index's eviction callback only sees a hash.
type entry struct {
	obj  Object
	data []byte // the content, for objects up to the inline limit
}

// entryOverhead is the index cost of an entry besides its inline bytes.
const entryOverhead = 256

// Store is the cache of one directory. It is safe for concurrent use.
type Store struct {
	dir, blobsDir, ingestDir string
	db                       *bolt.DB
	index                    *ristretto.Cache[string, *entry]
	inlineLimit              int64
	log                      *zap.Logger
	now                      func() time.Time

	ctx    context.Context // ends at Close; fills run on it
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	mu    sync.Mutex
	fills map[digest.Digest]*fill

	access accessLog
}

// Open opens (creating if needed) the cache in opts.Dir, removes leftovers
// of downloads interrupted by a crash, and starts the access flusher.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("cache: a directory is required")
	}
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = DefaultMemoryBytes
	}
	if opts.InlineLimit <= 0 {
		opts.InlineLimit = DefaultInlineLimit
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AccessFlushInterval <= 0 {
		opts.AccessFlushInterval = DefaultAccessFlushInterval
	}
	s := &Store{
		dir:         opts.Dir,
		blobsDir:    filepath.Join(opts.Dir, "blobs"),
		ingestDir:   filepath.Join(opts.Dir, "ingest"),
		inlineLimit: opts.InlineLimit,
		log:         opts.Logger,
		now:         opts.Now,
		fills:       make(map[digest.Digest]*fill),
	}
	if err := os.MkdirAll(s.blobsDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	db, err := openMeta(filepath.Join(opts.Dir, "meta.db"))
	if err != nil {
		return nil, err
	}
	s.db = db
	// Only the process holding meta.db's lock may clean the ingest area.
	if err := os.RemoveAll(s.ingestDir); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("removing interrupted downloads: %w", err)
	}
	if err := os.MkdirAll(s.ingestDir, 0o755); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("creating ingest directory: %w", err)
	}
	counters := max(opts.MemoryBytes/1024*10, 100_000)
	s.index, err = ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: counters,
		MaxCost:     opts.MemoryBytes,
		BufferItems: 64,
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("creating hot index: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.access.init()
	s.wg.Add(1)
	go s.flushAccessLoop(opts.AccessFlushInterval)
	return s, nil
}

// Dir returns the cache's root directory.
func (s *Store) Dir() string { return s.dir }

// Close stops running fills (their readers fail with ErrClosed), writes
// the pending access times, and closes the metadata store and the index.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	err := s.flushAccess()
	s.index.Close()
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("closing metadata: %w", cerr)
	}
	return err
}

// blobPath is where verified content of d lives.
func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.blobsDir, string(d.Algorithm()), d.Encoded())
}

// Stat returns the metadata of a verified object, or ErrNotFound.
func (s *Store) Stat(d digest.Digest) (Object, error) {
	if e, ok := s.index.Get(string(d)); ok {
		s.access.touch(d, s.now())
		return e.obj, nil
	}
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return Object{}, notFound(err)
	}
	obj := s.objectFromDisk(d, fi.Size())
	s.index.Set(string(d), &entry{obj: obj}, entryOverhead)
	s.access.touch(d, s.now())
	return obj, nil
}

// Open returns the verified file of d and its metadata, or ErrNotFound.
// The caller closes the file.
func (s *Store) Open(d digest.Digest) (*os.File, Object, error) {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, Object{}, notFound(err)
	}
	var obj Object
	if e, ok := s.index.Get(string(d)); ok {
		obj = e.obj
	} else {
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, Object{}, fmt.Errorf("stat %s: %w", d, err)
		}
		obj = s.objectFromDisk(d, fi.Size())
		s.index.Set(string(d), &entry{obj: obj}, entryOverhead)
	}
	s.access.touch(d, s.now())
	return f, obj, nil
}

// ReadAll returns the content of a small object (a manifest) and its
// metadata: from the hot index when it holds the bytes, else from disk.
// An object larger than limit is ErrTooLarge.
func (s *Store) ReadAll(d digest.Digest, limit int64) ([]byte, Object, error) {
	if e, ok := s.index.Get(string(d)); ok && e.data != nil {
		s.access.touch(d, s.now())
		return e.data, e.obj, nil
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, Object{}, notFound(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, Object{}, fmt.Errorf("stat %s: %w", d, err)
	}
	if fi.Size() > limit {
		return nil, Object{}, fmt.Errorf("%s is %d bytes: %w", d, fi.Size(), ErrTooLarge)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, Object{}, fmt.Errorf("reading %s: %w", d, err)
	}
	obj := s.objectFromDisk(d, fi.Size())
	s.setIndex(obj, data)
	s.access.touch(d, s.now())
	return data, obj, nil
}

// setIndex records a verified object in the hot index, with its bytes when
// they are small enough.
func (s *Store) setIndex(obj Object, data []byte) {
	e := &entry{obj: obj}
	cost := int64(entryOverhead)
	if data != nil && int64(len(data)) <= s.inlineLimit {
		e.data = data
		cost += int64(len(data))
	}
	s.index.Set(string(obj.Digest), e, cost)
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

// Put stores small content (a manifest) after verifying it against d. It
// does nothing when d is already stored, but records a media type that was
// missing.
func (s *Store) Put(d digest.Digest, mediaType string, data []byte) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if !d.Algorithm().Available() || d.Algorithm().FromBytes(data) != d {
		return fmt.Errorf("storing %s: %w", d, ErrDigestMismatch)
	}
	obj := Object{Digest: d, Size: int64(len(data)), MediaType: mediaType}
	if _, err := os.Stat(s.blobPath(d)); err == nil {
		if m, ok := s.readObjectMeta(d); mediaType != "" && (!ok || m.MediaType == "") {
			if err := s.writeObjectMeta(obj); err != nil {
				return err
			}
		}
		s.setIndex(obj, data)
		return nil
	}
	tmp, err := os.CreateTemp(s.ingestDir, d.Encoded()+"-*")
	if err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("storing %s: %w", d, err)
	}
	if err := s.commit(tmp, obj); err != nil {
		return err
	}
	s.setIndex(obj, data)
	return nil
}

// commit makes a verified temporary file visible as obj: fsync, metadata
// first (so a crash leaves at most metadata without a file, which reads as
// absent), rename into blobs/, fsync the directory. The temporary file is
// closed, and removed on failure.
func (s *Store) commit(tmp *os.File, obj Object) error {
	name := tmp.Name()
	fail := func(step string, err error) error {
		_ = tmp.Close()
		_ = os.Remove(name)
		return fmt.Errorf("committing %s: %s: %w", obj.Digest, step, err)
	}
	if err := tmp.Sync(); err != nil {
		return fail("fsync", err)
	}
	if err := tmp.Close(); err != nil {
		return fail("close", err)
	}
	if err := s.writeObjectMeta(obj); err != nil {
		return fail("metadata", err)
	}
	dst := s.blobPath(obj.Digest)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail("mkdir", err)
	}
	if err := os.Rename(name, dst); err != nil {
		return fail("rename", err)
	}
	if dir, err := os.Open(filepath.Dir(dst)); err == nil {
		_ = dir.Sync()
		_ = dir.Close()
	}
	return nil
}

// notFound maps a missing file to ErrNotFound and wraps other errors.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	return err
}
