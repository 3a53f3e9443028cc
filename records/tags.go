package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/regcache/regcache/cache"
)

// tagKey is the meta.db key of a tag record. NUL cannot occur in a
// registry host, a repository name or a tag.
func tagKey(upstream, repo, tag string) []byte {
	return []byte(upstream + "\x00" + repo + "\x00" + tag)
}

// Tag returns the record of upstream/repo:tag, or cache.ErrNotFound.
func (s *Store) Tag(upstream, repo, tag string) (cache.Tag, error) {
	var t cache.Tag
	if err := s.readRecord(tagsBucket, tagKey(upstream, repo, tag), &t); err != nil {
		if errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrClosed) {
			return cache.Tag{}, err
		}
		return cache.Tag{}, fmt.Errorf("reading tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return t, nil
}

// SetTag records what upstream/repo:tag points at.
func (s *Store) SetTag(upstream, repo, tag string, t cache.Tag) error {
	v, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(tagsBucket).Put(tagKey(upstream, repo, tag), v)
	})
	if errors.Is(err, cache.ErrClosed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("writing tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return nil
}

// RefreshTag returns rec: these records are the only ones there are
// (a shared tier's wrapper returns a newer shared record).
func (s *Store) RefreshTag(_, _, _ string, rec cache.Tag) cache.Tag { return rec }

// EachTag calls fn for every tag record, in the order of upstream,
// repository and tag, until fn returns false. fn runs inside a read
// transaction: it must not call the Store or its content store.
func (s *Store) EachTag(fn func(upstream, repo, tag string, t cache.Tag) bool) error {
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(tagsBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			parts := bytes.SplitN(k, []byte{0}, 3)
			if len(parts) != 3 {
				continue
			}
			var t cache.Tag
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("tag record %q: %w", k, err)
			}
			if !fn(string(parts[0]), string(parts[1]), string(parts[2]), t) {
				return nil
			}
		}
		return nil
	})
	if errors.Is(err, cache.ErrClosed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("listing tags: %w", err)
	}
	return nil
}

// DeleteTag removes the record of upstream/repo:tag; a missing record is
// not an error.
func (s *Store) DeleteTag(upstream, repo, tag string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(tagsBucket).Delete(tagKey(upstream, repo, tag))
	})
	if errors.Is(err, cache.ErrClosed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("deleting tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return nil
}

// Prune removes the tag records whose manifest is not stored (stored
// reports false), and reports how many. The mirror's own records (tags
// beginning with ":") are left alone.
func (s *Store) Prune(stored func(digest.Digest) bool) (int, error) {
	var keys [][]byte
	var ds []digest.Digest
	err := s.EachTag(func(upstream, repo, tag string, t cache.Tag) bool {
		if !strings.HasPrefix(tag, ":") {
			keys = append(keys, tagKey(upstream, repo, tag))
			ds = append(ds, t.Digest)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for i, key := range keys {
		if stored(ds[i]) {
			continue
		}
		err := s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(tagsBucket)
			// Only if it still points at the missing manifest: a fill
			// may have moved it meanwhile.
			var cur cache.Tag
			if v := b.Get(key); v == nil || json.Unmarshal(v, &cur) != nil || cur.Digest != ds[i] {
				return nil
			}
			n++
			return b.Delete(key)
		})
		if errors.Is(err, cache.ErrClosed) {
			return n, err
		}
		if err != nil {
			return n, fmt.Errorf("pruning tags: %w", err)
		}
	}
	return n, nil
}
