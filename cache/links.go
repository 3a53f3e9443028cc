package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
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

// Link records that upstream served object d as part of repository repo,
// and shares a new link when there is a shared tier.
func (s *Store) Link(upstream, repo string, d digest.Digest) error {
	added, err := s.linkLocal(upstream, repo, d)
	if added && s.shared != nil {
		s.setRecordShared(sharedLinkName(upstream, repo, d), []byte("{}"))
	}
	return err
}

// linkLocal is Link in the local metadata only; it reports whether the
// link is new there.
func (s *Store) linkLocal(upstream, repo string, d digest.Digest) (bool, error) {
	if !s.enter() {
		return false, ErrClosed
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
		return false, nil
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(linksBucket).Put(key, []byte{})
	})
	if err != nil {
		return false, fmt.Errorf("linking %s to %s/%s: %w", d, upstream, repo, err)
	}
	return true, nil
}

// Linked reports whether upstream served object d as part of repository
// repo (see Link). With a shared tier, a link another node shared counts
// too (and is kept locally).
func (s *Store) Linked(upstream, repo string, d digest.Digest) bool {
	if s.linkedLocal(upstream, repo, d) {
		return true
	}
	if s.shared == nil {
		return false
	}
	if _, err := s.recordShared(sharedLinkName(upstream, repo, d)); err != nil {
		return false
	}
	_, _ = s.linkLocal(upstream, repo, d)
	return true
}

// linkedLocal is Linked in the local metadata only.
func (s *Store) linkedLocal(upstream, repo string, d digest.Digest) bool {
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
// g.At, and shares it when there is a shared tier.
func (s *Store) SetGrant(upstream, repo string, g Grant) error {
	err := s.setGrantLocal(upstream, repo, g)
	if s.shared != nil {
		if v, merr := json.Marshal(g); merr == nil {
			s.setRecordShared(sharedGrantName(upstream, repo), v)
		}
	}
	return err
}

// setGrantLocal is SetGrant in the local metadata only.
func (s *Store) setGrantLocal(upstream, repo string, g Grant) error {
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

// LocalGrant is GrantOf without asking the shared tier: the grant this
// node's meta.db holds, for listings that must not make a request per
// repository.
func (s *Store) LocalGrant(upstream, repo string) (Grant, error) {
	return s.grantLocal(upstream, repo)
}

// GrantOf returns the grant recorded for upstream/repo, or ErrNotFound.
// With a shared tier, a grant missing locally is read there (and kept).
func (s *Store) GrantOf(upstream, repo string) (Grant, error) {
	g, err := s.grantLocal(upstream, repo)
	if s.shared == nil || !errors.Is(err, ErrNotFound) {
		return g, err
	}
	if sg, ok := s.sharedGrant(upstream, repo); ok {
		s.keepGrant(upstream, repo, sg)
		return sg, nil
	}
	return g, err
}

// RefreshGrant returns the shared grant of upstream/repo when it is newer
// than g (another node renewed it), keeping it locally; otherwise g.
// Without a shared tier it returns g.
func (s *Store) RefreshGrant(upstream, repo string, g Grant) Grant {
	if s.shared == nil {
		return g
	}
	if sg, ok := s.sharedGrant(upstream, repo); ok && sg.At.After(g.At) {
		s.keepGrant(upstream, repo, sg)
		return sg
	}
	return g
}

// sharedGrant reads the shared grant of upstream/repo.
func (s *Store) sharedGrant(upstream, repo string) (Grant, bool) {
	v, err := s.recordShared(sharedGrantName(upstream, repo))
	var g Grant
	if err != nil || json.Unmarshal(v, &g) != nil {
		return Grant{}, false
	}
	return g, true
}

// keepGrant records a shared grant locally.
func (s *Store) keepGrant(upstream, repo string, g Grant) {
	if err := s.setGrantLocal(upstream, repo, g); err != nil {
		s.log.Warn("keeping a shared grant", zap.Error(err))
	}
}

// grantLocal is GrantOf in the local metadata only.
func (s *Store) grantLocal(upstream, repo string) (Grant, error) {
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
// the identity it was recorded for), in the shared tier too.
func (s *Store) DeleteGrant(upstream, repo string) error {
	if s.shared != nil {
		s.deleteRecordShared(sharedGrantName(upstream, repo))
	}
	return s.deleteGrantLocal(upstream, repo)
}

// deleteGrantLocal is DeleteGrant in the local metadata only.
func (s *Store) deleteGrantLocal(upstream, repo string) error {
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
