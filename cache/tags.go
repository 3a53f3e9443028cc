package cache

import (
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

// Tag returns the record of upstream/repo:tag, or ErrNotFound.
func (s *Store) Tag(upstream, repo, tag string) (Tag, error) {
	if !s.enter() {
		return Tag{}, ErrClosed
	}
	defer s.leave()
	var t Tag
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(tagsBucket).Get(tagKey(upstream, repo, tag))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &t)
	})
	if errors.Is(err, ErrNotFound) {
		return Tag{}, ErrNotFound
	}
	if err != nil {
		return Tag{}, fmt.Errorf("reading tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return t, nil
}

// SetTag records what upstream/repo:tag points at.
func (s *Store) SetTag(upstream, repo, tag string, t Tag) error {
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
