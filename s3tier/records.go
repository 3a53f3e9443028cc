package s3tier

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/cache"
)

// requestTimeout bounds one call to the bucket made for a request (a
// manifest, a tag record), so that an unreachable tier costs little.
const requestTimeout = 10 * time.Second

// LocalRecords are the records of one node that Records wraps
// (*records.Store).
type LocalRecords interface {
	// Tag returns the record of upstream/repo:tag, or cache.ErrNotFound.
	Tag(upstream, repo, tag string) (cache.Tag, error)
	// SetTag records upstream/repo:tag.
	SetTag(upstream, repo, tag string, t cache.Tag) error
	// DeleteTag removes the record of upstream/repo:tag.
	DeleteTag(upstream, repo, tag string) error
	// EachTag calls fn for every tag record until fn returns false.
	EachTag(fn func(upstream, repo, tag string, t cache.Tag) bool) error
	// AddLink links d to upstream/repo, reporting whether it is new.
	AddLink(upstream, repo string, d digest.Digest) (bool, error)
	// Linked reports whether d is linked to upstream/repo.
	Linked(upstream, repo string, d digest.Digest) bool
	// LocalGrant returns the grant of upstream/repo, or
	// cache.ErrNotFound.
	LocalGrant(upstream, repo string) (cache.Grant, error)
	// SetGrant records the grant of upstream/repo.
	SetGrant(upstream, repo string, g cache.Grant) error
	// DeleteGrant removes the grant of upstream/repo.
	DeleteGrant(upstream, repo string) error
}

// Records are a node's records shared through the tier: tag records,
// links and grants are written through to the bucket, and a local miss
// reads the bucket's record (and keeps it locally), so that what one node
// learnt every node knows. The bucket's errors never fail a call that the
// local records answer; they are logged (at Debug while the tier is known
// to be down, its outage logged once).
type Records struct {
	local LocalRecords
	tier  *Tier
	log   *zap.Logger
}

// Records returns local wrapped by the tier.
func (t *Tier) Records(local LocalRecords) *Records {
	return &Records{local: local, tier: t, log: t.log}
}

// Names of the shared records of the access model: a link per object and
// repository, a grant per repository. Repository components never start
// with an underscore, so "_links" and "_grant" cannot be part of a
// repository name.

// sharedLinkName is the shared record of a link.
func sharedLinkName(upstream, repo string, d digest.Digest) string {
	return "links/" + upstream + "/" + repo + "/_links/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// sharedGrantName is the shared record of a grant.
func sharedGrantName(upstream, repo string) string {
	return "grants/" + upstream + "/" + repo + "/_grant"
}

// Tag returns the record of upstream/repo:tag, or an error wrapping
// cache.ErrNotFound: the local one, else the shared one (kept locally).
func (r *Records) Tag(upstream, repo, tag string) (cache.Tag, error) {
	t, err := r.local.Tag(upstream, repo, tag)
	if !errors.Is(err, cache.ErrNotFound) {
		return t, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	t, err = r.tier.Tag(ctx, upstream, repo, tag)
	if errors.Is(err, cache.ErrNotFound) {
		return cache.Tag{}, cache.ErrNotFound
	}
	if err != nil {
		r.logFailure("reading a tag from the shared tier", err, zap.String("upstream", upstream),
			zap.String("repository", repo), zap.String("tag", tag))
		return cache.Tag{}, cache.ErrNotFound
	}
	if err := r.local.SetTag(upstream, repo, tag, t); err != nil {
		r.log.Warn("keeping a shared tag record", zap.Error(err))
	}
	return t, nil
}

// SetTag records what upstream/repo:tag points at, and writes the record
// through to the bucket.
func (r *Records) SetTag(upstream, repo, tag string, t cache.Tag) error {
	err := r.local.SetTag(upstream, repo, tag, t)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if serr := r.tier.SetTag(ctx, upstream, repo, tag, t); serr != nil {
		r.logFailure("writing a tag to the shared tier", serr, zap.String("upstream", upstream),
			zap.String("repository", repo), zap.String("tag", tag))
	}
	return err
}

// RefreshTag returns the shared record of upstream/repo:tag when it is
// newer than rec (another node revalidated the tag), keeping it locally;
// otherwise rec.
func (r *Records) RefreshTag(upstream, repo, tag string, rec cache.Tag) cache.Tag {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	t, err := r.tier.Tag(ctx, upstream, repo, tag)
	if err != nil || !t.FetchedAt.After(rec.FetchedAt) {
		return rec
	}
	if err := r.local.SetTag(upstream, repo, tag, t); err != nil {
		r.log.Warn("keeping a shared tag record", zap.Error(err))
	}
	return t
}

// DeleteTag removes the local record of upstream/repo:tag.
func (r *Records) DeleteTag(upstream, repo, tag string) error {
	return r.local.DeleteTag(upstream, repo, tag)
}

// EachTag calls fn for every local tag record (see records.Store.EachTag).
func (r *Records) EachTag(fn func(upstream, repo, tag string, t cache.Tag) bool) error {
	return r.local.EachTag(fn)
}

// Link records that upstream served object d as part of repository repo,
// and shares a link that is new here.
func (r *Records) Link(upstream, repo string, d digest.Digest) error {
	added, err := r.local.AddLink(upstream, repo, d)
	if added {
		r.setRecord(sharedLinkName(upstream, repo, d), []byte("{}"))
	}
	return err
}

// Linked reports whether upstream served object d as part of repository
// repo: a link another node shared counts too (and is kept locally).
func (r *Records) Linked(upstream, repo string, d digest.Digest) bool {
	if r.local.Linked(upstream, repo, d) {
		return true
	}
	if _, err := r.record(sharedLinkName(upstream, repo, d)); err != nil {
		return false
	}
	_, _ = r.local.AddLink(upstream, repo, d)
	return true
}

// SetGrant records the grant of upstream/repo, and shares it.
func (r *Records) SetGrant(upstream, repo string, g cache.Grant) error {
	err := r.local.SetGrant(upstream, repo, g)
	if v, merr := json.Marshal(g); merr == nil {
		r.setRecord(sharedGrantName(upstream, repo), v)
	}
	return err
}

// LocalGrant is the grant this node holds, without asking the bucket.
func (r *Records) LocalGrant(upstream, repo string) (cache.Grant, error) {
	return r.local.LocalGrant(upstream, repo)
}

// GrantOf returns the grant recorded for upstream/repo, or
// cache.ErrNotFound: a grant missing locally is read in the bucket (and
// kept).
func (r *Records) GrantOf(upstream, repo string) (cache.Grant, error) {
	g, err := r.local.LocalGrant(upstream, repo)
	if !errors.Is(err, cache.ErrNotFound) {
		return g, err
	}
	if sg, ok := r.sharedGrant(upstream, repo); ok {
		r.keepGrant(upstream, repo, sg)
		return sg, nil
	}
	return g, err
}

// RefreshGrant returns the shared grant of upstream/repo when it is newer
// than g (another node renewed it), keeping it locally; otherwise g.
func (r *Records) RefreshGrant(upstream, repo string, g cache.Grant) cache.Grant {
	if sg, ok := r.sharedGrant(upstream, repo); ok && sg.At.After(g.At) {
		r.keepGrant(upstream, repo, sg)
		return sg
	}
	return g
}

// DeleteGrant forgets the grant of upstream/repo, in the bucket too.
func (r *Records) DeleteGrant(upstream, repo string) error {
	r.deleteRecord(sharedGrantName(upstream, repo))
	return r.local.DeleteGrant(upstream, repo)
}

// sharedGrant reads the shared grant of upstream/repo.
func (r *Records) sharedGrant(upstream, repo string) (cache.Grant, bool) {
	v, err := r.record(sharedGrantName(upstream, repo))
	var g cache.Grant
	if err != nil || json.Unmarshal(v, &g) != nil {
		return cache.Grant{}, false
	}
	return g, true
}

// keepGrant records a shared grant locally.
func (r *Records) keepGrant(upstream, repo string, g cache.Grant) {
	if err := r.local.SetGrant(upstream, repo, g); err != nil {
		r.log.Warn("keeping a shared grant", zap.Error(err))
	}
}

// record reads a shared record, logging failures other than a miss.
func (r *Records) record(name string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	v, err := r.tier.Record(ctx, name)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		r.logFailure("reading a shared record", err)
	}
	return v, err
}

// setRecord writes a shared record, logging a failure.
func (r *Records) setRecord(name string, value []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := r.tier.SetRecord(ctx, name, value); err != nil {
		r.logFailure("writing a shared record", err)
	}
}

// deleteRecord removes a shared record, logging a failure.
func (r *Records) deleteRecord(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := r.tier.DeleteRecord(ctx, name); err != nil {
		r.logFailure("removing a shared record", err)
	}
}

// logFailure logs a failure of the bucket: at Warn, or at Debug while the
// tier is known to be unavailable (its outage was logged once).
func (r *Records) logFailure(msg string, err error, fields ...zap.Field) {
	logFailure(r.log, msg, err, fields...)
}

// logFailure logs a failure of the bucket on log: at Warn, or at Debug
// while the tier is known to be unavailable.
func logFailure(log *zap.Logger, msg string, err error, fields ...zap.Field) {
	level := zapcore.WarnLevel
	if errors.Is(err, ErrUnavailable) {
		level = zapcore.DebugLevel
	}
	if c := log.Check(level, msg); c != nil {
		c.Write(append(fields, zap.Error(err))...)
	}
}
