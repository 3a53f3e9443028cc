package cache

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"
)

// Names of the shared records of the access model (see links.go): a link
// per object and repository, a grant per repository. Repository
// components never start with an underscore, so "_links" and "_grant"
// cannot be part of a repository name.

// sharedLinkName is the shared record of a link.
func sharedLinkName(upstream, repo string, d digest.Digest) string {
	return "links/" + upstream + "/" + repo + "/_links/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// sharedGrantName is the shared record of a grant.
func sharedGrantName(upstream, repo string) string {
	return "grants/" + upstream + "/" + repo + "/_grant"
}

// recordShared reads a shared record, logging failures other than a miss.
func (s *Store) recordShared(name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(s.ctx, sharedTimeout)
	defer cancel()
	v, err := s.shared.Record(ctx, name)
	if err != nil && !isNotFound(err) {
		s.logShared("reading a shared record", err)
	}
	return v, err
}

// setRecordShared writes a shared record, logging a failure.
func (s *Store) setRecordShared(name string, value []byte) {
	ctx, cancel := context.WithTimeout(s.ctx, sharedTimeout)
	defer cancel()
	if err := s.shared.SetRecord(ctx, name, value); err != nil {
		s.logShared("writing a shared record", err)
	}
}

// deleteRecordShared removes a shared record, logging a failure.
func (s *Store) deleteRecordShared(name string) {
	ctx, cancel := context.WithTimeout(s.ctx, sharedTimeout)
	defer cancel()
	if err := s.shared.DeleteRecord(ctx, name); err != nil {
		s.logShared("removing a shared record", err)
	}
}

// isNotFound reports whether err wraps ErrNotFound.
func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
