package cache

import (
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Dependent keeps records about stored objects in the store's metadata
// database (see WithMeta), such as the records of package records: links
// per object, tag records pointing at manifests. The store tells it when
// objects go, so that nothing it keeps outlives the content.
type Dependent interface {
	// Forget drops what it keeps about d, inside tx: the transaction that
	// removes d's metadata, so that both go at once.
	Forget(tx *bolt.Tx, d digest.Digest) error
	// Prune drops the records that point at objects that are no longer
	// stored (stored reports false for them, and reads no lock of the
	// Dependent), after a pass of idle eviction, and reports how many.
	Prune(stored func(digest.Digest) bool) (int, error)
}

// Attach makes dep the store's Dependent: removals of objects call its
// Forget, passes of idle eviction its Prune. Attach it once, right after
// Open.
func (s *Store) Attach(dep Dependent) {
	s.dependent.Store(&dep)
}

// dependentOf returns the attached Dependent, nil without one.
func (s *Store) dependentOf() Dependent {
	if p := s.dependent.Load(); p != nil {
		return *p
	}
	return nil
}

// WithMeta runs fn with the store's metadata database, which the records
// kept next to the content share, while the store is open: fn must not
// close it or call the Store. After Close it returns ErrClosed.
func (s *Store) WithMeta(fn func(db *bolt.DB) error) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	return fn(s.db)
}

// storedOrBusy reports whether d is stored or being filled: what Prune of
// a Dependent keeps.
func (s *Store) storedOrBusy(d digest.Digest) bool {
	_, ok := s.readObjectMeta(d)
	return ok || s.busy(d)
}
