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
	// objectsBucket maps a digest to its objectMeta.
	objectsBucket = []byte("objects")
)

// metaOpenTimeout bounds the wait for meta.db's file lock.
const metaOpenTimeout = time.Second

// objectMeta is an object's record in meta.db.
type objectMeta struct {
	Size       int64  `json:"size"`
	MediaType  string `json:"media_type,omitempty"`
	LastAccess int64  `json:"last_access_ns,omitempty"` // Unix nanoseconds
	// LastAccessSec is the last access as records before nanoseconds kept
	// it (Unix seconds); read only.
	LastAccessSec int64 `json:"last_access,omitempty"`
}

// lastAccess returns the record's last access in Unix nanoseconds, from
// either form.
func (m objectMeta) lastAccess() int64 {
	if m.LastAccess == 0 && m.LastAccessSec > 0 {
		return m.LastAccessSec * int64(time.Second)
	}
	return m.LastAccess
}

// openMeta opens meta.db and creates its buckets. While another Store (of
// this process or another) holds it, it fails after metaOpenTimeout
// instead of waiting for the lock forever.
func openMeta(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: metaOpenTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("opening cache metadata %s: the cache directory is in use by another process or store: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening cache metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{objectsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialising cache metadata %s: %w", path, err)
	}
	return db, nil
}

// readObjectMeta returns d's record, if it has a readable one.
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

// writeObjectMeta records an object's size and media type, keeping a
// media type already recorded when obj has none, and marks it accessed now.
func (s *Store) writeObjectMeta(obj Object) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(objectsBucket)
		m := objectMeta{Size: obj.Size, MediaType: obj.MediaType, LastAccess: s.now().UnixNano()}
		if v := b.Get([]byte(obj.Digest)); v != nil && m.MediaType == "" {
			var old objectMeta
			if json.Unmarshal(v, &old) == nil {
				m.MediaType = old.MediaType
			}
		}
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return b.Put([]byte(obj.Digest), v)
	})
	if err != nil {
		return fmt.Errorf("writing metadata of %s: %w", obj.Digest, err)
	}
	return nil
}
