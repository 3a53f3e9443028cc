package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Buckets of meta.db.
var (
	objectsBucket = []byte("objects")
	tagsBucket    = []byte("tags")
)

// objectMeta is an object's record in meta.db.
type objectMeta struct {
	Size       int64  `json:"size"`
	MediaType  string `json:"media_type,omitempty"`
	LastAccess int64  `json:"last_access,omitempty"` // Unix seconds
}

// openMeta opens meta.db and creates its buckets. A second process on the
// same directory fails here instead of waiting forever for the lock.
func openMeta(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: another process has this cache open", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{objectsBucket, tagsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialising %s: %w", path, err)
	}
	return db, nil
}

// readObjectMeta returns d's record, if any.
func (s *Store) readObjectMeta(d digest.Digest) (objectMeta, bool) {
	var m objectMeta
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(objectsBucket).Get([]byte(d)); v != nil {
			found = json.Unmarshal(v, &m) == nil
		}
		return nil
	})
	return m, found
}

// writeObjectMeta records an object's size and media type.
func (s *Store) writeObjectMeta(obj Object) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(objectsBucket)
		m := objectMeta{Size: obj.Size, MediaType: obj.MediaType, LastAccess: s.now().Unix()}
		if v := b.Get([]byte(obj.Digest)); v != nil {
			var old objectMeta
			if json.Unmarshal(v, &old) == nil && m.MediaType == "" {
				m.MediaType = old.MediaType
			}
		}
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return b.Put([]byte(obj.Digest), v)
	})
}

// Tag is what a tag pointed at when it was last fetched or revalidated.
type Tag struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type,omitempty"`
	Size      int64         `json:"size"`
	FetchedAt time.Time     `json:"fetched_at"`
}

// tagKey is the meta.db key of a tag record.
func tagKey(upstream, repo, tag string) []byte {
	return []byte(upstream + "\x00" + repo + "\x00" + tag)
}

// Tag returns the record of upstream/repo:tag, or ErrNotFound.
func (s *Store) Tag(upstream, repo, tag string) (Tag, error) {
	var t Tag
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(tagsBucket).Get(tagKey(upstream, repo, tag))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &t)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Tag{}, fmt.Errorf("reading tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return t, err
}

// SetTag records what upstream/repo:tag points at.
func (s *Store) SetTag(upstream, repo, tag string, t Tag) error {
	if s.closed.Load() {
		return ErrClosed
	}
	v, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding tag record: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(tagsBucket).Put(tagKey(upstream, repo, tag), v)
	})
	if err != nil {
		return fmt.Errorf("writing tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return nil
}
