package s3tier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
)

// ErrUnavailable means the object store did not answer, or refused the
// configuration, now or a moment ago: the caller goes on without the
// shared tier.
var ErrUnavailable = errors.New("shared tier unavailable")

// Tier is the shared tier of a cache on one bucket: the source of its
// fills (cache.SourceProvider), and the bucket under its content
// (Content) and records (Records).
type Tier struct {
	cfg    Config
	client *minio.Client
	core   minio.Core
	log    *zap.Logger
	// downUntil is when the tier is tried again after the object store
	// was found unreachable (Unix nanoseconds; 0: available).
	downUntil atomic.Int64
	counters  counters
}

// New returns the tier of cfg's bucket. It makes no request.
func New(cfg Config) (*Tier, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	host, secure, _ := ParseEndpoint(cfg.Endpoint) // checked
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.New(&credentials.Static{})
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: 4 * cfg.Timeout,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
	}
	client, err := minio.New(host, &minio.Options{
		Creds: creds, Secure: secure, Region: cfg.Region, BucketLookup: lookup,
		Transport: transport, MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return &Tier{cfg: cfg, client: client, core: minio.Core{Client: client}, log: cfg.Logger}, nil
}

// Available reports whether the tier is in use, that is not bypassed
// after the object store was found unreachable.
func (t *Tier) Available() bool {
	until := t.downUntil.Load()
	return until == 0 || t.cfg.Now().UnixNano() >= until
}

// Probe checks that the bucket exists and the credentials reach it, for
// an early report of a wrong configuration; the tier works (or bypasses
// the store) the same without it.
func (t *Tier) Probe(ctx context.Context) error {
	ok, err := t.client.BucketExists(ctx, t.cfg.Bucket)
	if err = t.check("bucket exists", err); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("s3: bucket %q does not exist", t.cfg.Bucket)
	}
	return nil
}

// check classifies err from the object store: nil stays nil, a missing
// key wraps cache.ErrNotFound; a failure to reach the store, a 502, 503
// or 504, and answers that say the configuration is wrong (401, 403, no
// such bucket)
// mark the tier down for the retry interval and wrap ErrUnavailable, so
// that requests do not pay for a store that cannot serve them. Any other
// answer of the store is returned as it is.
func (t *Tier) check(op string, err error) error {
	if err == nil {
		t.downUntil.Store(0)
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket:
		t.downUntil.Store(0)
		return fmt.Errorf("s3 %s: %w", op, cache.ErrNotFound)
	case resp.StatusCode == 0 || resp.StatusCode >= 502 || resp.Code == minio.NoSuchBucket ||
		resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("s3 %s: %w", op, err)
		}
		if t.downUntil.Swap(t.cfg.Now().Add(t.cfg.RetryInterval).UnixNano()) == 0 {
			t.log.Error("shared object store unreachable or refusing; serving without it for a while",
				zap.String("operation", op), zap.Duration("retry_in", t.cfg.RetryInterval), zap.Error(err))
		}
		return fmt.Errorf("s3 %s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("s3 %s: %w", op, err)
}

// ready fails fast with ErrUnavailable while the tier is bypassed.
func (t *Tier) ready(op string) error {
	if !t.Available() {
		return fmt.Errorf("s3 %s: %w", op, ErrUnavailable)
	}
	return nil
}

// blobKey is the key of the verified content d.
func (t *Tier) blobKey(d digest.Digest) string {
	return t.cfg.Prefix + "blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// tagKey is the key of a tag record. Repository components never start
// with an underscore, so "_tags" cannot be part of a repository name.
func (t *Tier) tagKey(upstream, repo, tag string) string {
	return t.cfg.Prefix + "tags/" + upstream + "/" + repo + "/_tags/" + tag
}

// ReadAll returns the shared content d if it is at most limit bytes.
func (t *Tier) ReadAll(ctx context.Context, d digest.Digest, limit int64) ([]byte, cache.Object, error) {
	if err := t.ready("get"); err != nil {
		return nil, cache.Object{}, err
	}
	body, info, _, err := t.core.GetObject(ctx, t.cfg.Bucket, t.blobKey(d), minio.GetObjectOptions{})
	if err = t.check("get", err); err != nil {
		return nil, cache.Object{}, err
	}
	defer body.Close()
	if info.Size > limit {
		return nil, cache.Object{}, fmt.Errorf("s3 get %s: %d bytes: %w", d, info.Size, cache.ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err = t.check("get", err); err != nil {
		return nil, cache.Object{}, err
	}
	return data, cache.Object{Digest: d, Size: int64(len(data)), MediaType: info.ContentType}, nil
}

// Stat returns the metadata of the shared content d.
func (t *Tier) Stat(ctx context.Context, d digest.Digest) (cache.Object, error) {
	if err := t.ready("stat"); err != nil {
		return cache.Object{}, err
	}
	info, err := t.client.StatObject(ctx, t.cfg.Bucket, t.blobKey(d), minio.StatObjectOptions{})
	if err = t.check("stat", err); err != nil {
		return cache.Object{}, err
	}
	return cache.Object{Digest: d, Size: info.Size, MediaType: info.ContentType}, nil
}

// Put shares small verified content; content already shared is left as
// it is.
func (t *Tier) Put(ctx context.Context, obj cache.Object, data []byte) error {
	if err := t.ready("put"); err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: obj.MediaType}
	opts.SetMatchETagExcept("*")
	_, err := t.client.PutObject(ctx, t.cfg.Bucket, t.blobKey(obj.Digest), bytes.NewReader(data), int64(len(data)), opts)
	if isConflict(err) {
		return nil
	}
	return t.check("put", err)
}

// Tag returns the shared record of upstream/repo:tag.
func (t *Tier) Tag(ctx context.Context, upstream, repo, tag string) (cache.Tag, error) {
	if err := t.ready("get tag"); err != nil {
		return cache.Tag{}, err
	}
	body, _, _, err := t.core.GetObject(ctx, t.cfg.Bucket, t.tagKey(upstream, repo, tag), minio.GetObjectOptions{})
	if err = t.check("get tag", err); err != nil {
		return cache.Tag{}, err
	}
	defer body.Close()
	var rec cache.Tag
	if err := json.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&rec); err != nil {
		return cache.Tag{}, fmt.Errorf("s3 get tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	return rec, nil
}

// SetTag shares the record of upstream/repo:tag.
func (t *Tier) SetTag(ctx context.Context, upstream, repo, tag string, rec cache.Tag) error {
	if err := t.ready("put tag"); err != nil {
		return err
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding tag %s/%s:%s: %w", upstream, repo, tag, err)
	}
	_, err = t.client.PutObject(ctx, t.cfg.Bucket, t.tagKey(upstream, repo, tag), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/json"})
	return t.check("put tag", err)
}

// recordKey is the key of the shared record name.
func (t *Tier) recordKey(name string) string { return t.cfg.Prefix + "records/" + name }

// Record returns the shared record name.
func (t *Tier) Record(ctx context.Context, name string) ([]byte, error) {
	if err := t.ready("get record"); err != nil {
		return nil, err
	}
	body, _, _, err := t.core.GetObject(ctx, t.cfg.Bucket, t.recordKey(name), minio.GetObjectOptions{})
	if err = t.check("get record", err); err != nil {
		return nil, err
	}
	defer body.Close()
	v, err := io.ReadAll(io.LimitReader(body, 64<<10))
	if err != nil {
		return nil, t.check("get record", err)
	}
	return v, nil
}

// SetRecord shares the record name.
func (t *Tier) SetRecord(ctx context.Context, name string, value []byte) error {
	if err := t.ready("put record"); err != nil {
		return err
	}
	_, err := t.client.PutObject(ctx, t.cfg.Bucket, t.recordKey(name), bytes.NewReader(value), int64(len(value)),
		minio.PutObjectOptions{ContentType: "application/json"})
	return t.check("put record", err)
}

// DeleteRecord removes the shared record name.
func (t *Tier) DeleteRecord(ctx context.Context, name string) error {
	if err := t.ready("delete record"); err != nil {
		return err
	}
	err := t.client.RemoveObject(ctx, t.cfg.Bucket, t.recordKey(name), minio.RemoveObjectOptions{})
	if err = t.check("delete record", err); errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	return err
}

// isConflict reports whether err is a failed precondition of a
// conditional write (412, or 409 when the store saw a concurrent one).
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	resp := minio.ToErrorResponse(err)
	return resp.StatusCode == http.StatusPreconditionFailed || resp.StatusCode == http.StatusConflict ||
		resp.Code == minio.PreconditionFailed
}

// Interface guards
var _ cache.SourceProvider = (*Tier)(nil)
