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

// Content is addressed by digest and shared by every repository that
// holds it, but an upstream grants access per repository. Links record
// which repositories the upstream served an object under, so that content
// fetched for one repository is never served as part of another one
// without the upstream's word; grants record which repositories the
// mirror's default identity (anonymous, or the configured credentials) may
// pull, so that they outlive a restart and an upstream outage.

// Buckets of meta.db for access records.
var (
	// linksBucket holds linkKey(d, upstream, repo) keys with empty values.
	linksBucket = []byte("links")
	// grantsBucket maps grantKey(upstream, repo) to a Grant.
	grantsBucket = []byte("grants")
)

// linkKey is the meta.db key of a link: by digest first, so that removing
// an object drops its links with one prefix scan.
func linkKey(d digest.Digest, upstream, repo string) []byte {
	return []byte(string(d) + "\x00" + upstream + "\x00" + repo)
}

// grantKey is the meta.db key of a grant.
func grantKey(upstream, repo string) []byte {
	return []byte(upstream + "\x00" + repo)
}

// Link records that upstream served object d as part of repository repo.
func (s *Store) Link(upstream, repo string, d digest.Digest) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	key := linkKey(d, upstream, repo)
	// Most links exist already: a read is cheaper than a write.
	exists := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		exists = tx.Bucket(linksBucket).Get(key) != nil
		return nil
	})
	if exists {
		return nil
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(linksBucket).Put(key, []byte{})
	})
	if err != nil {
		return fmt.Errorf("linking %s to %s/%s: %w", d, upstream, repo, err)
	}
	return nil
}

// Linked reports whether upstream served object d as part of repository
// repo (see Link).
func (s *Store) Linked(upstream, repo string, d digest.Digest) bool {
	if !s.enter() {
		return false
	}
	defer s.leave()
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(linksBucket).Get(linkKey(d, upstream, repo)) != nil
		return nil
	})
	return found
}

// deleteLinks drops every link of d, inside a write transaction.
func deleteLinks(tx *bolt.Tx, d digest.Digest) error {
	prefix := []byte(string(d) + "\x00")
	c := tx.Bucket(linksBucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Grant is the last time an upstream let an identity pull a repository.
type Grant struct {
	// Identity identifies the credentials the upstream accepted, without
	// revealing them; empty for anonymous access.
	Identity string `json:"identity,omitempty"`
	// At is when the upstream last did.
	At time.Time `json:"at"`
}

// SetGrant records that the upstream let g.Identity pull upstream/repo at
// g.At.
func (s *Store) SetGrant(upstream, repo string, g Grant) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	v, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encoding grant of %s/%s: %w", upstream, repo, err)
	}
	err = s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(grantsBucket).Put(grantKey(upstream, repo), v)
	})
	if err != nil {
		return fmt.Errorf("writing grant of %s/%s: %w", upstream, repo, err)
	}
	return nil
}

// GrantOf returns the grant recorded for upstream/repo, or ErrNotFound.
func (s *Store) GrantOf(upstream, repo string) (Grant, error) {
	var g Grant
	if err := s.readRecord(grantsBucket, grantKey(upstream, repo), &g); err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrClosed) {
			return Grant{}, err
		}
		return Grant{}, fmt.Errorf("reading grant of %s/%s: %w", upstream, repo, err)
	}
	return g, nil
}

// DeleteGrant forgets the grant of upstream/repo (the upstream refused
// the identity it was recorded for).
func (s *Store) DeleteGrant(upstream, repo string) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.leave()
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(grantsBucket).Delete(grantKey(upstream, repo))
	})
	if err != nil {
		return fmt.Errorf("deleting grant of %s/%s: %w", upstream, repo, err)
	}
	return nil
}
