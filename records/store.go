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

// Store holds the tag records, links and grants of one cache directory.
// It is safe for concurrent use. Its content store attaches it when it
// opens (cache.Options.Dependent = New()); until then, and once the
// content store is closed, it fails with cache.ErrClosed.
type Store struct {
	meta *cache.Store // set by Attach, before the store is shared
}

// New returns records to be attached to a content store as it opens.
func New() *Store { return &Store{} }

// Attach keeps the records in meta's database, creating their buckets;
// cache.Open calls it.
func (s *Store) Attach(meta *cache.Store) error {
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
		return fmt.Errorf("opening the cache records: %w", err)
	}
	s.meta = meta
	return nil
}

// withMeta runs fn with the records' database, or fails with
// cache.ErrClosed before Attach and after the content store closed.
func (s *Store) withMeta(fn func(db *bolt.DB) error) error {
	if s.meta == nil {
		return cache.ErrClosed
	}
	return s.meta.WithMeta(fn)
}

// view runs fn in a read transaction of the records' database.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return s.withMeta(func(db *bolt.DB) error { return db.View(fn) })
}

// update runs fn in a write transaction of the records' database.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	return s.withMeta(func(db *bolt.DB) error { return db.Update(fn) })
}

// batch runs fn in a write transaction that bbolt may share with
// concurrent writers.
func (s *Store) batch(fn func(tx *bolt.Tx) error) error {
	return s.withMeta(func(db *bolt.DB) error { return db.Batch(fn) })
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
var _ cache.Dependent = (*Store)(nil)
