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
	// Attach is called once by Open (Options.Dependent), after meta.db
	// opened and before any object can be removed: the Dependent keeps s
	// to reach the database, and prepares its part of it.
	Attach(s *Store) error
	// Forget drops what it keeps about d, inside tx: the transaction that
	// removes d's metadata, so that both go at once.
	Forget(tx *bolt.Tx, d digest.Digest) error
	// Prune drops the records that point at objects that are no longer
	// stored (stored reports false for them; it takes no lock of the
	// Dependent), after a pass of idle eviction, and reports how many.
	Prune(stored func(digest.Digest) bool) (int, error)
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
