package cache

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// The values of the records kept next to the content (package records)
// and shared by the shared tier.

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

// Grant is the last time an upstream let an identity pull a repository.
type Grant struct {
	// Identity identifies the credentials the upstream accepted, without
	// revealing them; empty for anonymous access.
	Identity string `json:"identity,omitempty"`
	// At is when the upstream last did.
	At time.Time `json:"at"`
}
