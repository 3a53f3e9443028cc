package mirror

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
)

// Content is the content store the mirror serves from and fills: verified
// content by digest, the fills that bring it in, and the checks that keep
// it true at rest. The mirror names only these methods; the server wires
// the store (plain, or wrapped by a tier that several nodes share).
type Content interface {
	// Open returns a reader of the verified content d, or an error
	// wrapping cache.ErrNotFound.
	Open(ctx context.Context, d digest.Digest) (*cache.Reader, error)
	// Fill returns a reader of d, starting (or joining) the one fill of d
	// from fetch on a miss.
	Fill(ctx context.Context, d digest.Digest, fetch cache.FetchFunc) (*cache.Reader, error)
	// Prefetch starts the fill of d from fetch below the fills clients
	// wait for; it reports whether it started one.
	Prefetch(d digest.Digest, fetch cache.FetchFunc) bool
	// SplitSize is the size of the first range a fill asks for, zero for
	// whole-body fills.
	SplitSize() int64
	// ReadAll returns the content d (a manifest) of at most limit bytes.
	ReadAll(d digest.Digest, limit int64) ([]byte, cache.Object, error)
	// InspectContent returns the content d of at most limit bytes without
	// counting an access.
	InspectContent(d digest.Digest, limit int64) ([]byte, cache.Object, error)
	// Put stores small content (a manifest) verified against d.
	Put(d digest.Digest, mediaType string, data []byte) error
	// Stat returns the metadata of d, counting an access.
	Stat(d digest.Digest) (cache.Object, error)
	// Inspect returns the metadata of d without counting an access.
	Inspect(d digest.Digest) (cache.Object, error)
	// LastAccess returns when d was last served, if it is stored.
	LastAccess(d digest.Digest) (time.Time, bool)
	// Delete removes d.
	Delete(d digest.Digest) error
	// Verified reports whether d was hashed on disk recently enough to be
	// served without another check.
	Verified(d digest.Digest) bool
	// CheckSoon queues d for a check of its bytes at rest.
	CheckSoon(d digest.Digest)
	// CheckRead records the digest got of n bytes of d read from f.
	CheckRead(d digest.Digest, f *os.File, got digest.Digest, n int64) error
	// Condemned reports whether the file f of d was found corrupt.
	Condemned(d digest.Digest, f *os.File) bool
	// ReportCorrupt reports the file f of d as corrupt for why.
	ReportCorrupt(d digest.Digest, f *os.File, why string)
}

// Records are the small records the mirror keeps next to the content:
// tag -> digest answers, the repositories each digest was pulled through
// (links), and the upstream's pull grants per repository.
type Records interface {
	// Tag returns the record of upstream/repo:tag, or an error wrapping
	// cache.ErrNotFound.
	Tag(upstream, repo, tag string) (cache.Tag, error)
	// SetTag records upstream/repo:tag.
	SetTag(upstream, repo, tag string, t cache.Tag) error
	// RefreshTag returns a newer record of upstream/repo:tag than rec
	// when one exists (another node revalidated it), else rec.
	RefreshTag(upstream, repo, tag string, rec cache.Tag) cache.Tag
	// DeleteTag removes the record of upstream/repo:tag.
	DeleteTag(upstream, repo, tag string) error
	// EachTag calls fn for every tag record until fn returns false.
	EachTag(fn func(upstream, repo, tag string, t cache.Tag) bool) error
	// Link records that d was served through upstream/repo.
	Link(upstream, repo string, d digest.Digest) error
	// Linked reports whether d was served through upstream/repo.
	Linked(upstream, repo string, d digest.Digest) bool
	// GrantOf returns the grant of upstream/repo.
	GrantOf(upstream, repo string) (cache.Grant, error)
	// LocalGrant returns the grant of upstream/repo this node holds.
	LocalGrant(upstream, repo string) (cache.Grant, error)
	// SetGrant records the grant of upstream/repo.
	SetGrant(upstream, repo string, g cache.Grant) error
	// RefreshGrant returns a newer grant of upstream/repo than g when one
	// exists, else g.
	RefreshGrant(upstream, repo string, g cache.Grant) cache.Grant
	// DeleteGrant removes the grant of upstream/repo.
	DeleteGrant(upstream, repo string) error
}

// Peers are the other nodes that share the cache with this one: what
// they hold, and the tasks that run once among them.
type Peers interface {
	// StatElsewhere returns the metadata of d where the peers hold it
	// (not on the local disk), or an error wrapping cache.ErrNotFound.
	StatElsewhere(d digest.Digest) (cache.Object, error)
	// Once runs run unless ready reports the work done: of the callers
	// naming one task at once, one runs it while the others wait for
	// ready, or take over when it stops.
	Once(ctx context.Context, name string, ready func() bool, run func() error) error
}

// noPeers are the Peers of a node that shares its cache with none.
type noPeers struct{}

// StatElsewhere finds nothing: no other node holds anything.
func (noPeers) StatElsewhere(d digest.Digest) (cache.Object, error) {
	return cache.Object{}, fmt.Errorf("checking %s elsewhere: %w", d, cache.ErrNotFound)
}

// Once runs run: no other node can.
func (noPeers) Once(_ context.Context, _ string, _ func() bool, run func() error) error {
	return run()
}

// Interface guards
var _ Peers = noPeers{}
