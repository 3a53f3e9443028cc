package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ErrSharedUnavailable means the shared tier is not in use for now (it
// was found unreachable); its implementation logs the outage once, so the
// store logs each request that goes without it at Debug only.
var ErrSharedUnavailable = errors.New("shared tier unavailable")

// sharedTimeout bounds one call to the shared tier made for a request
// (a manifest, a tag record), so that an unreachable tier costs little.
const sharedTimeout = 10 * time.Second

// Shared is a tier behind the local disk that the stores of several nodes
// share, such as an object store bucket: verified content by digest
// lives there, so that what one node fetched every node serves. The
// store asks it on a local miss before the upstream and writes what it
// verified through to it. Its errors never fail a request
// that the disk or the upstream can answer. Implementations are safe for
// concurrent use.
type Shared interface {
	// Source opens the content of d for a local fill: the shared copy when
	// there is one; else the fill of d that another node runs, streamed as
	// it lands; else fetch's upstream body, published to the other nodes
	// as it arrives. While the tier is unreachable it returns fetch's
	// body as it is. A Done callback in the Source receives the fill's
	// verdict.
	Source(ctx context.Context, d digest.Digest, fetch FetchFunc) (Source, error)
	// ReadAll returns the shared content d (a manifest) if it is at most
	// limit bytes, or an error wrapping ErrNotFound. The store verifies
	// the bytes against d.
	ReadAll(ctx context.Context, d digest.Digest, limit int64) ([]byte, Object, error)
	// Stat returns the metadata of the shared content d, or an error
	// wrapping ErrNotFound.
	Stat(ctx context.Context, d digest.Digest) (Object, error)
	// Put shares small verified content (a manifest).
	Put(ctx context.Context, obj Object, data []byte) error
	// Once runs run unless ready reports the work done: of the nodes
	// calling it with one name at once, one runs it while the others wait
	// for ready, or take over when it stops. While the tier is
	// unreachable, run runs at once.
	Once(ctx context.Context, name string, ready func() bool, run func() error) error
}

// Shared returns the store's shared tier, nil when it has none.
func (s *Store) Shared() Shared { return s.shared }

// readShared is ReadAll's fallback on a local miss: the shared copy of d,
// verified, then kept on the local disk. Errors of the shared tier other
// than a miss are logged and read as a miss.
func (s *Store) readShared(d digest.Digest, limit int64) ([]byte, Object, error) {
	ctx, cancel := context.WithTimeout(s.ctx, sharedTimeout)
	defer cancel()
	data, obj, err := s.shared.ReadAll(ctx, d, limit)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrTooLarge) {
		return nil, Object{}, err
	}
	if err != nil {
		s.logShared("reading from the shared tier", err, zap.String("digest", d.String()))
		return nil, Object{}, fmt.Errorf("reading %s: %w", d, ErrNotFound)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		s.log.Error("shared content does not match its digest", zap.String("digest", d.String()), zap.String("got", got.String()))
		return nil, Object{}, fmt.Errorf("reading %s: %w", d, ErrNotFound)
	}
	obj.Digest, obj.Size = d, int64(len(data))
	if _, err := s.putLocal(d, obj.MediaType, data); err != nil {
		if c := s.log.Check(zapcore.DebugLevel, "keeping shared content on disk"); c != nil {
			c.Write(zap.String("digest", d.String()), zap.Error(err))
		}
	}
	if c := s.log.Check(zapcore.DebugLevel, "shared hit"); c != nil {
		c.Write(zap.String("digest", d.String()), zap.Int64("bytes", obj.Size))
	}
	return data, obj, nil
}

// StatElsewhere returns the metadata of d in the shared tier, or
// ErrNotFound (also without a shared tier, or while it fails). It does
// not look at the local disk.
func (s *Store) StatElsewhere(d digest.Digest) (Object, error) {
	if s.shared == nil {
		return Object{}, ErrNotFound
	}
	ctx, cancel := context.WithTimeout(s.ctx, sharedTimeout)
	defer cancel()
	obj, err := s.shared.Stat(ctx, d)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.logShared("checking the shared tier", err, zap.String("digest", d.String()))
		}
		return Object{}, fmt.Errorf("checking %s: %w", d, ErrNotFound)
	}
	return obj, nil
}

// Once runs run once across the nodes sharing the tier (see
// Shared.Once): a node that finds the task running elsewhere waits until
// ready reports true and returns nil without running it. Without a shared
// tier it simply runs it.
func (s *Store) Once(ctx context.Context, name string, ready func() bool, run func() error) error {
	if s.shared == nil {
		return run()
	}
	return s.shared.Once(ctx, name, ready, run)
}

// putShared writes small verified content through to the shared tier,
// logging a failure.
func (s *Store) putShared(obj Object, data []byte) {
	ctx, cancel := context.WithTimeout(s.ctx, sharedTimeout)
	defer cancel()
	if err := s.shared.Put(ctx, obj, data); err != nil {
		s.logShared("writing to the shared tier", err, zap.String("digest", obj.Digest.String()))
	}
}

// source opens the body of a fill: through the shared tier when there is
// one, else straight from fetch.
func (s *Store) source(d digest.Digest, fetch FetchFunc) (Source, error) {
	if s.shared == nil {
		return fetch(s.ctx, 0)
	}
	return s.shared.Source(s.ctx, d, fetch)
}

// finishShared hands a fill's verdict to its source's Done callback, with
// the verified content: the stored file, or the download when it could
// not be stored. It runs before the download is removed.
func (s *Store) finishShared(fl *fill, stored bool, err error) {
	if fl.onDone == nil {
		return
	}
	if err != nil {
		fl.onDone(nil, Object{}, err)
		return
	}
	path := fl.tmpPath
	if stored {
		path, _ = s.blobPath(fl.d) // d is valid
	}
	f, oerr := os.Open(path)
	if oerr != nil {
		fl.onDone(nil, Object{}, fmt.Errorf("opening the verified content of %s: %w", fl.d, oerr))
		return
	}
	defer f.Close()
	written, _, _, _ := fl.state()
	fl.onDone(f, Object{Digest: fl.d, Size: written, MediaType: fl.mediaType}, nil)
}

// logShared logs a failure of the shared tier: at Warn, or at Debug while
// the tier is known to be unavailable (its outage was logged once).
func (s *Store) logShared(msg string, err error, fields ...zap.Field) {
	level := zapcore.WarnLevel
	if errors.Is(err, ErrSharedUnavailable) {
		level = zapcore.DebugLevel
	}
	if c := s.log.Check(level, msg); c != nil {
		c.Write(append(fields, zap.Error(err))...)
	}
}
