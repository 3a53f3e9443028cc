package cache

import (
	// The hashes of the digest algorithms go-digest knows; without them
	// Algorithm.Available reports false.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// blobPath is where the verified content of d lives:
// <Dir>/blobs/<algorithm>/<encoded>. It rejects a digest that is not
// well formed, so no digest can name a path outside blobs/.
func (s *Store) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("invalid digest %q: %w", d, err)
	}
	return filepath.Join(s.blobsDir, string(d.Algorithm()), d.Encoded()), nil
}

// commit makes a verified temporary file in ingest/ visible as obj: fsync
// the file, write the metadata (first, so that a crash leaves at most
// metadata without a file, which reads as absent), rename the file into
// blobs/, fsync the directory, and account for it in the budget. The
// temporary file is closed; on failure it stays in ingest/ for the caller
// to remove. A full or unwritable disk makes the error wrap ErrUnwritable.
func (s *Store) commit(tmp *os.File, obj Object) error {
	name := tmp.Name()
	fail := func(step string, err error) error {
		_ = tmp.Close()
		return fmt.Errorf("committing %s: %s: %w", obj.Digest, step, s.noteWriteError(step, err))
	}
	dst, err := s.blobPath(obj.Digest)
	if err != nil {
		return fail("path", err)
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
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("creating directory", err)
	}
	_, statErr := os.Lstat(dst)
	replaced := statErr == nil
	if err := os.Rename(name, dst); err != nil {
		return fail("rename", err)
	}
	if err := syncDir(dir); err != nil {
		// The content is in place and valid; only its durability across
		// a power loss is in doubt.
		s.log.Warn("syncing blob directory", zap.String("digest", obj.Digest.String()), zap.Error(err))
	}
	s.noteWriteOK()
	if !replaced {
		s.added(obj.Size)
	}
	return nil
}

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := f.Sync()
	if cerr := f.Close(); serr == nil {
		serr = cerr
	}
	return serr
}

// Delete removes d's content, its metadata and its index entry, or returns
// ErrNotFound. Readers that already opened the file keep reading it; a
// fill of d in progress is not affected and stores d again when it ends.
func (s *Store) Delete(d digest.Digest) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	_, err := s.remove(d)
	return err
}

// remove is Delete for callers that entered already; it returns the size
// of what it removed. The file goes first: once it is gone the object is
// gone, whatever happens to the rest (a record left behind by a crash is
// dropped at the next start).
func (s *Store) remove(d digest.Digest) (int64, error) {
	return s.removeIf(d, nil)
}

// errReplaced means removeIf left a file that is not the one it was asked
// to remove.
var errReplaced = errors.New("stored file replaced")

// removeIf is remove when match (if set) accepts the file stored now;
// otherwise it removes nothing and returns errReplaced.
func (s *Store) removeIf(d digest.Digest, match func(os.FileInfo) bool) (int64, error) {
	// One removal at a time against the reconciliation, which would
	// otherwise take a record whose file was just removed for a crash's
	// leftover and count its bytes out a second time.
	s.removeMu.Lock()
	defer s.removeMu.Unlock()
	path, err := s.blobPath(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, notFound(d, err)
	}
	if match != nil && !match(fi) {
		return 0, errReplaced
	}
	if err := os.Remove(path); err != nil {
		return 0, notFound(d, err)
	}
	s.forgetVerified(d)
	s.index.Del(string(d))
	s.access.forget(d)
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(objectsBucket).Delete([]byte(d)); err != nil {
			return err
		}
		if dep := s.dependent; dep != nil {
			return dep.Forget(tx, d)
		}
		return nil
	})
	// The figures change only after the record is gone, so whoever sees
	// the cache within its budget also sees the evicted object unlisted.
	s.removed(fi.Size())
	if err != nil {
		return fi.Size(), fmt.Errorf("deleting metadata of %s: %w", d, err)
	}
	return fi.Size(), nil
}

// notFound maps a missing file to ErrNotFound and wraps other errors.
func notFound(d digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	return fmt.Errorf("opening %s: %w", d, err)
}
