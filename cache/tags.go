package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Tag is what a tag pointed at when it was last fetched or revalidated.
type Tag struct {
	// Digest is the manifest the tag resolved to.
	Digest digest.Digest `json:"digest"`
	// MediaType is the manifest's media type.
	MediaType string `json:"media_type,omitempty"`
	// Size is the manifest's size in bytes.
	Size int64 `json:"size"`
	// FetchedAt is when the upstream last confirmed the tag.
	FetchedAt time.Time `json:"fetched_at"`
}

// tagKey is the meta.db key of a tag record. NUL cannot occur in a
// registry host, a repository name or a tag.
func tagKey(upstream, repo, tag string) []byte {
	return []byte(upstream + "\x00" + repo + "\x00" + tag)
}

// Tag returns the record of upstream/repo:tag, or ErrNotFound. With a
// shared tier, a local miss reads the shared record.
func (s *Store) Tag(upstream, repo, tag string) (Tag, error) {
	t, err := s.tagLocal(upstream, repo, tag)
	if s.shared != nil && errors.Is(err, ErrNotFound) {
		return s.tagShared(upstream, repo, tag)
	}
	return t, err
}

// tagLocal is Tag in the local metadata only.
func (s *Store) tagLocal(upstream, repo, tag string) (Tag, error) {
	var t Tag
	if err := s.readRecord(tagsBucket, tagKey(upstream, repo, tag), &t); err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrClosed) {
			return Tag{}, err
		}
		return Tag{}, fmt.Errorf("reading tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return t, nil
}

// readRecord decodes the JSON record of key in bucket into v; ErrNotFound
// when there is none.
func (s *Store) readRecord(bucket, key []byte, v any) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	return s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucket).Get(key)
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, v)
	})
}

// SetTag records what upstream/repo:tag points at, and writes the record
// through to the shared tier when there is one.
func (s *Store) SetTag(upstream, repo, tag string, t Tag) error {
	err := s.setTagLocal(upstream, repo, tag, t)
	if s.shared != nil {
		s.setTagShared(upstream, repo, tag, t)
	}
	return err
}

// setTagLocal is SetTag in the local metadata only.
func (s *Store) setTagLocal(upstream, repo, tag string, t Tag) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	v, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(tagsBucket).Put(tagKey(upstream, repo, tag), v)
	})
	if err != nil {
		return fmt.Errorf("writing tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return nil
}

// EachTag calls fn for every tag record, in the order of upstream,
// repository and tag, until fn returns false. fn runs inside a read
// transaction: it must not call the Store.
func (s *Store) EachTag(fn func(upstream, repo, tag string, t Tag) bool) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(tagsBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			parts := bytes.SplitN(k, []byte{0}, 3)
			if len(parts) != 3 {
				continue
			}
			var t Tag
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("tag record %q: %w", k, err)
			}
			if !fn(string(parts[0]), string(parts[1]), string(parts[2]), t) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing tags: %w", err)
	}
	return nil
}

// DeleteTag removes the record of upstream/repo:tag; a missing record is
// not an error.
func (s *Store) DeleteTag(upstream, repo, tag string) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(tagsBucket).Delete(tagKey(upstream, repo, tag))
	})
	if err != nil {
		return fmt.Errorf("deleting tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return nil
}
