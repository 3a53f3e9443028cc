package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/regcache/regcache/s3tier"
)

// S3Storage is a bucket of an S3-compatible object store (MinIO, Ceph RGW,
// the Versity S3 Gateway, AWS S3) that several regcache nodes share: the
// cache behind their local storage directories. Verified blobs and
// manifests (by digest) and tag records (with their fetch time) live in
// the bucket, so an image pulled through any node is served by every node
// without the upstream, and a node that starts with an empty disk serves
// from the bucket at once. Concurrent misses for one digest on different
// nodes cost one upstream download: one node takes the digest's lease in
// the bucket and publishes the download in chunks as it arrives, the
// others stream those chunks; when the filling node dies, its lease
// expires and another node takes the fill over. The local directory stays
// each node's own read-through tier, bounded by max_size. While the bucket
// is unreachable, nodes serve from their disks and fill from the upstream
// on their own. Changing these settings takes a restart: a reload keeps
// the storage directory's open cache, and logs at Warn each setting it
// keeps (the keys' values are not logged).
type S3Storage struct {
	// Endpoint is the object store's URL: http://host:port,
	// https://host, or host[:port] (https). Required.
	Endpoint string `json:"endpoint"`

	// Bucket is the bucket's name. It must exist. Required.
	Bucket string `json:"bucket"`

	// Region is the bucket's region. Default: us-east-1.
	Region string `json:"region,omitempty"`

	// AccessKey is the access key ID. Accepts placeholders such as
	// {env.S3_ACCESS_KEY}. Default: anonymous requests.
	AccessKey string `json:"access_key,omitempty"`

	// SecretKey is the secret access key. Accepts placeholders such as
	// {env.S3_SECRET_KEY}; never logged. Use a placeholder: a literal key
	// shows in Caddy's config API. Default: none.
	SecretKey string `json:"secret_key,omitempty"`

	// Prefix is prepended to every key, so that several caches can share
	// one bucket. Default: none.
	Prefix string `json:"prefix,omitempty"`

	// PathStyle addresses the bucket by path (http://host/bucket/key), as
	// MinIO and the Versity S3 Gateway on a bare host need, instead of by
	// virtual host (http://bucket.host/key). Default: false.
	PathStyle bool `json:"path_style,omitempty"`

	// LeaseTTL is how long a node's claim on a download lasts without
	// renewal (it renews at a third of it): when a node dies mid-download,
	// another node takes the download over after at most this long. The
	// nodes' clocks must agree with the object store's within about a
	// second. Default: 30s.
	LeaseTTL caddy.Duration `json:"lease_ttl,omitempty"`

	// ChunkSize is the size of the chunks in which a download is published
	// to the other nodes as it arrives (held in memory once per running
	// download), and of the parts of multipart uploads (at least 5 MiB
	// there). Default: 8 MiB.
	ChunkSize int64 `json:"chunk_size,omitempty"`
}

// tierConfig resolves placeholders and returns the tier's configuration
// (without its logger).
func (s *S3Storage) tierConfig(repl *caddy.Replacer) s3tier.Config {
	return s3tier.Config{
		Endpoint:  repl.ReplaceAll(s.Endpoint, ""),
		Bucket:    repl.ReplaceAll(s.Bucket, ""),
		Region:    repl.ReplaceAll(s.Region, ""),
		AccessKey: repl.ReplaceAll(s.AccessKey, ""),
		SecretKey: repl.ReplaceAll(s.SecretKey, ""),
		Prefix:    repl.ReplaceAll(s.Prefix, ""),
		PathStyle: s.PathStyle,
		LeaseTTL:  time.Duration(s.LeaseTTL),
		ChunkSize: s.ChunkSize,
	}
}

// validate checks the settings that need no placeholder resolved.
func (s *S3Storage) validate() error {
	if s.Endpoint == "" || s.Bucket == "" {
		return fmt.Errorf("s3: endpoint and bucket are required")
	}
	if s.LeaseTTL < 0 {
		return fmt.Errorf("s3: lease_ttl must not be negative, got %s", time.Duration(s.LeaseTTL))
	}
	if s.LeaseTTL != 0 && time.Duration(s.LeaseTTL) < 2*time.Second {
		return fmt.Errorf("s3: lease_ttl must be at least 2s (the object store's clock has whole seconds), got %s", time.Duration(s.LeaseTTL))
	}
	if s.ChunkSize < 0 {
		return fmt.Errorf("s3: chunk_size must not be negative, got %d", s.ChunkSize)
	}
	return nil
}

// unmarshalS3 reads an `s3 { … }` block.
func unmarshalS3(d *caddyfile.Dispenser) (*S3Storage, error) {
	s := new(S3Storage)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "path_style" {
			s.PathStyle = true
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			continue
		}
		if !d.NextArg() {
			return nil, d.ArgErr()
		}
		val := d.Val()
		switch opt {
		case "endpoint":
			s.Endpoint = val
		case "bucket":
			s.Bucket = val
		case "region":
			s.Region = val
		case "access_key":
			s.AccessKey = val
		case "secret_key":
			s.SecretKey = val
		case "prefix":
			s.Prefix = val
		case "lease_ttl":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return nil, d.Errf("lease_ttl: %v", err)
			}
			s.LeaseTTL = caddy.Duration(dur)
		case "chunk_size":
			size, err := parseSize(val)
			if err != nil {
				return nil, d.Errf("chunk_size: %v", err)
			}
			s.ChunkSize = size
		default:
			return nil, d.Errf("unrecognized s3 option %q", opt)
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
	}
	return s, nil
}
