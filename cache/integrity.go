package cache

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
)

// maxCondemned bounds the removed corrupt files remembered for the readers
// that still have them open.
const maxCondemned = 4096

// integrity is what the store knows about its content at rest since it
// opened: the objects whose bytes on disk were hashed (or written from
// verified bytes), and the corrupt files it removed, which readers that
// opened them before must not finish sending.
type integrity struct {
	mu        sync.Mutex
	verified  map[digest.Digest]struct{}
	condemned map[digest.Digest][]os.FileInfo
	nCondemn  int

	corrupt      atomic.Int64 // corrupt objects found and removed
	corruptBytes atomic.Int64

	scrub scrubState
	soon  checkQueue // set up by startCheckQueue
}

// init prepares the sets.
func (in *integrity) init() {
	in.verified = make(map[digest.Digest]struct{})
	in.condemned = make(map[digest.Digest][]os.FileInfo)
}

// Verified reports whether the stored bytes of d were hashed, or written
// from verified bytes, since the store opened: a reader may then send them
// without hashing them again.
func (s *Store) Verified(d digest.Digest) bool {
	s.integ.mu.Lock()
	defer s.integ.mu.Unlock()
	_, ok := s.integ.verified[d]
	return ok
}

// markVerified records that the stored bytes of d are known good.
func (s *Store) markVerified(d digest.Digest) {
	s.integ.mu.Lock()
	s.integ.verified[d] = struct{}{}
	s.integ.mu.Unlock()
}

// forgetVerified drops d from the verified set: its file is gone, or a
// check found it bad.
func (s *Store) forgetVerified(d digest.Digest) {
	s.integ.mu.Lock()
	delete(s.integ.verified, d)
	s.integ.mu.Unlock()
}

// Condemned reports whether f, a file of d's that a reader opened, was
// since found corrupt and removed: its reader must not send its end.
func (s *Store) Condemned(d digest.Digest, f *os.File) bool {
	s.integ.mu.Lock()
	files := s.integ.condemned[d]
	s.integ.mu.Unlock()
	if len(files) == 0 || f == nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return true
	}
	for _, c := range files {
		if sameVersion(c, fi) {
			return true
		}
	}
	return false
}

// sameVersion reports whether a and b describe the same file as it was:
// the same inode, size and modification time. The inode alone is not
// enough: once every reader of a removed file closed it, the file system
// may give its number to the next file stored for the same digest.
func sameVersion(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// CheckRead takes the verdict of a reader that hashed the whole stored
// file f of d as it sent it: got is what the bytes hashed to, n how many
// there were. A match marks d verified. A mismatch (or a length other
// than the object's) removes the file, unless it was replaced meanwhile,
// logs it at Error, counts it, and returns an error wrapping
// ErrDigestMismatch: the reader must abort its response.
func (s *Store) CheckRead(d digest.Digest, f *os.File, got digest.Digest, n int64) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("checking %s: %w", d, err)
	}
	if got == d && n == fi.Size() {
		if s.sameStoredFile(d, fi) {
			s.markVerified(d)
		}
		return nil
	}
	s.condemn(d, fi, got, "first read")
	return fmt.Errorf("stored %s hashes to %s: %w", d, got, ErrDigestMismatch)
}

// ReportCorrupt takes the finding of a reader that f, a stored file of d
// it opened, cannot be d's content (it ended before the object's size,
// say): the file is removed, logged at Error and counted as CheckRead does
// with a mismatch.
func (s *Store) ReportCorrupt(d digest.Digest, f *os.File, why string) {
	fi, err := f.Stat()
	if err != nil {
		s.log.Error("checking a corrupt object", zap.String("digest", d.String()), zap.Error(err))
		return
	}
	s.condemn(d, fi, "", why)
}

// sameStoredFile reports whether fi is the file stored for d now.
func (s *Store) sameStoredFile(d digest.Digest, fi os.FileInfo) bool {
	path, err := s.blobPath(d)
	if err != nil {
		return false
	}
	cur, err := os.Lstat(path)
	return err == nil && sameVersion(cur, fi)
}

// condemn handles a stored file of d found corrupt by check (a scrub, a
// verify, a read): the file is removed with its metadata when it is still
// the one stored (a fill may have replaced it meanwhile), readers that
// have it open are told (Condemned), and the finding is logged at Error
// and counted. The next request for d fetches it again. Unlinking is safe
// for readers: they keep their open file, and the ones that send it whole
// see Condemned before its last byte.
func (s *Store) condemn(d digest.Digest, fi os.FileInfo, got digest.Digest, check string) {
	s.forgetVerified(d)
	s.integ.mu.Lock()
	if s.integ.nCondemn >= maxCondemned {
		// Forget the oldest findings: readers of those files are long gone.
		clear(s.integ.condemned)
		s.integ.nCondemn = 0
	}
	s.integ.condemned[d] = append(s.integ.condemned[d], fi)
	s.integ.nCondemn++
	s.integ.mu.Unlock()

	removed, err := s.removeFile(d, fi)
	fields := []zap.Field{zap.String("digest", d.String()), zap.String("check", check),
		zap.Int64("bytes", fi.Size()), zap.String("storage", s.dir)}
	if got != "" {
		fields = append(fields, zap.String("content_digest", got.String()))
	}
	switch {
	case err != nil:
		s.log.Error("corrupt object in the cache could not be removed", append(fields, zap.Error(err))...)
	case removed:
		s.log.Error("corrupt object removed from the cache: its content does not match its digest; the next request fetches it again", fields...)
	}
}

// removeFile removes d when fi is still its stored file, counts it as
// corrupt, and reports whether it did. The count comes first, so that
// whoever finds the object gone also finds it counted.
func (s *Store) removeFile(d digest.Digest, fi os.FileInfo) (bool, error) {
	counted := false
	_, err := s.removeIf(d, func(cur os.FileInfo) bool {
		if !sameVersion(cur, fi) {
			return false
		}
		s.integ.corrupt.Add(1)
		s.integ.corruptBytes.Add(fi.Size())
		counted = true
		return true
	})
	if err != nil && counted {
		s.integ.corrupt.Add(-1)
		s.integ.corruptBytes.Add(-fi.Size())
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, errReplaced) {
		return false, nil
	}
	return err == nil, err
}

// IntegrityStats are the findings of the checks of content at rest.
type IntegrityStats struct {
	// CorruptObjects counts the objects found corrupt and removed since
	// the store opened.
	CorruptObjects int64
	// CorruptBytes is their size.
	CorruptBytes int64
	// Scrub is the background scrub's progress.
	Scrub ScrubStats
}

// IntegrityStats returns the findings of the checks of content at rest.
func (s *Store) IntegrityStats() IntegrityStats {
	return IntegrityStats{
		CorruptObjects: s.integ.corrupt.Load(),
		CorruptBytes:   s.integ.corruptBytes.Load(),
		Scrub:          s.integ.scrub.stats(),
	}
}

// intact checks the bytes of d just read from its stored file fi, which
// the whole read of a small object (a manifest) does every time it goes to
// the disk: a mismatch condemns the file, and the caller answers as if d
// were not stored, so that it is fetched again. Called with the store
// entered.
func (s *Store) intact(d digest.Digest, fi os.FileInfo, data []byte) bool {
	if !d.Algorithm().Available() {
		return false
	}
	got := d.Algorithm().FromBytes(data)
	if got == d {
		return true
	}
	s.condemn(d, fi, got, "read")
	return false
}
