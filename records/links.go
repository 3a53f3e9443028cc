package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/regcache/regcache/cache"
)

// Content is addressed by digest and shared by every repository that
// holds it, but an upstream grants access per repository. Links record
// which repositories the upstream served an object under, so that content
// fetched for one repository is never served as part of another one
// without the upstream's word; grants record which repositories the
// mirror's default identity (anonymous, or the configured credentials) may
// pull, so that they outlive a restart and an upstream outage.

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
	_, err := s.AddLink(upstream, repo, d)
	return err
}

// AddLink is Link that also reports whether the link is new.
func (s *Store) AddLink(upstream, repo string, d digest.Digest) (bool, error) {
	key := linkKey(d, upstream, repo)
	// Most links exist already: a read is cheaper than a write.
	exists := false
	err := s.view(func(tx *bolt.Tx) error {
		exists = tx.Bucket(linksBucket).Get(key) != nil
		return nil
	})
	if err != nil || exists {
		return false, err
	}
	err = s.batch(func(tx *bolt.Tx) error {
		return tx.Bucket(linksBucket).Put(key, []byte{})
	})
	if errors.Is(err, cache.ErrClosed) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("linking %s to %s/%s: %w", d, upstream, repo, err)
	}
	return true, nil
}

// Linked reports whether upstream served object d as part of repository
// repo (see Link).
func (s *Store) Linked(upstream, repo string, d digest.Digest) bool {
	found := false
	_ = s.view(func(tx *bolt.Tx) error {
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

// SetGrant records that the upstream let g.Identity pull upstream/repo at
// g.At.
func (s *Store) SetGrant(upstream, repo string, g cache.Grant) error {
	v, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("encoding grant of %s/%s: %w", upstream, repo, err)
	}
	err = s.batch(func(tx *bolt.Tx) error {
		return tx.Bucket(grantsBucket).Put(grantKey(upstream, repo), v)
	})
	if errors.Is(err, cache.ErrClosed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("writing grant of %s/%s: %w", upstream, repo, err)
	}
	return nil
}

// LocalGrant is the grant this node's meta.db holds, for listings that
// must not make a request per repository: GrantOf without a shared
// tier's lookup. Here both are the same.
func (s *Store) LocalGrant(upstream, repo string) (cache.Grant, error) {
	var g cache.Grant
	if err := s.readRecord(grantsBucket, grantKey(upstream, repo), &g); err != nil {
		if errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrClosed) {
			return cache.Grant{}, err
		}
		return cache.Grant{}, fmt.Errorf("reading grant of %s/%s: %w", upstream, repo, err)
	}
	return g, nil
}

// GrantOf returns the grant recorded for upstream/repo, or
// cache.ErrNotFound.
func (s *Store) GrantOf(upstream, repo string) (cache.Grant, error) {
	return s.LocalGrant(upstream, repo)
}

// RefreshGrant returns g: these records are the only ones there are (a
// shared tier's wrapper returns a newer shared grant).
func (s *Store) RefreshGrant(_, _ string, g cache.Grant) cache.Grant { return g }

// DeleteGrant forgets the grant of upstream/repo (the upstream refused
// the identity it was recorded for).
func (s *Store) DeleteGrant(upstream, repo string) error {
	err := s.batch(func(tx *bolt.Tx) error {
		return tx.Bucket(grantsBucket).Delete(grantKey(upstream, repo))
	})
	if errors.Is(err, cache.ErrClosed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("deleting grant of %s/%s: %w", upstream, repo, err)
	}
	return nil
}
