package records

import (
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/regcache/regcache/cache"
)

// Buckets of meta.db that hold the records.
var (
	// tagsBucket maps tagKey(upstream, repo, tag) to a cache.Tag.
	tagsBucket = []byte("tags")
	// linksBucket holds linkKey(d, upstream, repo) keys with empty values.
	linksBucket = []byte("links")
	// grantsBucket maps grantKey(upstream, repo) to a cache.Grant.
	grantsBucket = []byte("grants")
)

// Meta is the content store whose metadata database the records share
// (*cache.Store).
type Meta interface {
	// WithMeta runs fn with the metadata database while the store is
	// open, or returns cache.ErrClosed.
	WithMeta(fn func(db *bolt.DB) error) error
	// Attach makes dep the store's cache.Dependent.
	Attach(dep cache.Dependent)
}

// Store holds the tag records, links and grants of one cache directory.
// It is safe for concurrent use, and fails with cache.ErrClosed once its
// content store is closed.
type Store struct {
	meta Meta
}

// Open returns the records kept in meta's database, creating their
// buckets, and attaches them to meta so that removed objects drop their
// links.
func Open(meta Meta) (*Store, error) {
	err := meta.WithMeta(func(db *bolt.DB) error {
		return db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{tagsBucket, linksBucket, grantsBucket} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("opening the cache records: %w", err)
	}
	s := &Store{meta: meta}
	meta.Attach(s)
	return s, nil
}

// view runs fn in a read transaction of the records' database.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return s.meta.WithMeta(func(db *bolt.DB) error { return db.View(fn) })
}

// update runs fn in a write transaction of the records' database.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	return s.meta.WithMeta(func(db *bolt.DB) error { return db.Update(fn) })
}

// batch runs fn in a write transaction that bbolt may share with
// concurrent writers.
func (s *Store) batch(fn func(tx *bolt.Tx) error) error {
	return s.meta.WithMeta(func(db *bolt.DB) error { return db.Batch(fn) })
}

// readRecord decodes the JSON record of key in bucket into v;
// cache.ErrNotFound when there is none.
func (s *Store) readRecord(bucket, key []byte, v any) error {
	return s.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucket).Get(key)
		if raw == nil {
			return cache.ErrNotFound
		}
		return json.Unmarshal(raw, v)
	})
}

// Forget drops the links of d inside tx, the transaction that removes
// d's metadata.
func (s *Store) Forget(tx *bolt.Tx, d digest.Digest) error {
	return deleteLinks(tx, d)
}

// Interface guards
var (
	_ cache.Dependent = (*Store)(nil)
	_ Meta            = (*cache.Store)(nil)
)
