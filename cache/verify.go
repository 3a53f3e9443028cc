package cache

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
)

// VerifyOptions shape an on-demand check of the whole cache.
type VerifyOptions struct {
	// Repair removes the corrupt objects found (logged at Error and
	// counted, as the scrub does), so that the next request fetches them
	// again. Without it the disk is left as it is: the objects found are
	// only reported, and no longer trusted as verified, so that the next
	// whole read of one hashes it again (and removes it).
	Repair bool
	// Rate bounds the reads in bytes per second. Default (0): as fast as
	// the disk goes.
	Rate int64
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	// Objects and Bytes are what was checked.
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Corrupt lists the objects whose content does not match their digest.
	Corrupt []CorruptObject `json:"corrupt"`
	// Unreadable counts objects that could not be read (logged).
	Unreadable int64 `json:"unreadable"`
}

// CorruptObject is one object found corrupt.
type CorruptObject struct {
	// Digest is the object's digest.
	Digest digest.Digest `json:"digest"`
	// Size is the size of its file.
	Size int64 `json:"size"`
	// MediaType is the recorded media type.
	MediaType string `json:"media_type,omitempty"`
	// Removed is true when the repair removed it.
	Removed bool `json:"removed"`
}

// Verify hashes every stored object against its digest, now, and reports
// the corrupt ones (removing them with opts.Repair). Each good object is
// marked verified. It stops with ctx's error when ctx ends.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (VerifyReport, error) {
	rep := VerifyReport{Corrupt: []CorruptObject{}}
	p := newPacer(opts.Rate)
	var cursor digest.Digest
	for {
		batch, err := s.objectsAfter(cursor, scrubBatch)
		if err != nil {
			return rep, err
		}
		if len(batch) == 0 {
			return rep, nil
		}
		for _, d := range batch {
			cursor = d
			var mediaType string
			if m, ok := s.readObjectMetaEntered(d); ok {
				mediaType = m.MediaType
			}
			bad, size, err := s.checkEntered(ctx, d, p, opts.Repair, "verify")
			if errors.Is(err, ErrNotFound) {
				continue // removed meanwhile
			}
			if err != nil {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				s.log.Error("verifying a cached object", zap.String("digest", d.String()), zap.Error(err))
				rep.Unreadable++
				continue
			}
			rep.Objects++
			rep.Bytes += size
			if bad {
				if !opts.Repair {
					s.log.Warn("corrupt object in the cache: its content does not match its digest (not removed: no repair asked)",
						zap.String("digest", d.String()), zap.Int64("bytes", size), zap.String("storage", s.dir))
				}
				rep.Corrupt = append(rep.Corrupt, CorruptObject{Digest: d, Size: size, MediaType: mediaType, Removed: opts.Repair})
			}
		}
	}
}

// readObjectMetaEntered is readObjectMeta for callers that have not
// entered the store.
func (s *Store) readObjectMetaEntered(d digest.Digest) (objectMeta, bool) {
	if !s.enter() {
		return objectMeta{}, false
	}
	defer s.leave()
	return s.readObjectMeta(d)
}
