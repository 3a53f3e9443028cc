package s3tier

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Defaults of Config.
const (
	// DefaultRegion is the region when none is configured.
	DefaultRegion = "us-east-1"
	// DefaultLeaseTTL is how long a fill's lease lasts without renewal.
	DefaultLeaseTTL = 30 * time.Second
	// DefaultChunkSize is the size of the chunks a fill publishes.
	DefaultChunkSize = 8 << 20
	// DefaultPollInterval is how often a node following another node's
	// fill looks for its next chunk.
	DefaultPollInterval = 200 * time.Millisecond
	// DefaultRetryInterval is how long the bucket is left alone after it
	// was found unreachable.
	DefaultRetryInterval = 30 * time.Second
	// DefaultTimeout bounds connecting to the object store and waiting
	// for its response headers.
	DefaultTimeout = 5 * time.Second
)

// Config configures a Tier; zero values mean defaults.
type Config struct {
	// Endpoint is the object store's URL (http://host:port or
	// https://host) or host[:port], which means https. Required.
	Endpoint string
	// Bucket is the bucket's name; it must exist. Required.
	Bucket string
	// Region is the bucket's region. Default: us-east-1.
	Region string
	// AccessKey and SecretKey are the credentials; both empty means
	// anonymous requests.
	AccessKey, SecretKey string
	// Prefix is prepended to every key, so that several caches can share
	// a bucket. A missing trailing slash is added.
	Prefix string
	// PathStyle addresses the bucket as a path (http://host/bucket/key)
	// instead of a virtual host (http://bucket.host/key).
	PathStyle bool
	// LeaseTTL is how long a fill's lease lasts without renewal; its
	// holder renews it at a third of it. Default: 30s.
	LeaseTTL time.Duration
	// ChunkSize is the size of the chunks a fill publishes for the other
	// nodes, and of the parts of multipart uploads. Default: 8 MiB.
	ChunkSize int64
	// PollInterval is how often a node following another node's fill
	// looks for its next chunk. Default: 200ms.
	PollInterval time.Duration
	// Timeout bounds connecting to the object store and waiting for its
	// response headers. Default: 5s.
	Timeout time.Duration
	// RetryInterval is how long the tier is bypassed after the object
	// store was found unreachable. Default: 30s.
	RetryInterval time.Duration
	// Logger receives the tier's logs. Default: a no-op logger.
	Logger *zap.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// WithDefaults returns c with the default of every field left zero (or
// less) filled in, and its prefix normalized: the values New runs with.
func (c Config) WithDefaults() Config {
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.ChunkSize <= 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = DefaultRetryInterval
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Prefix = normalizePrefix(c.Prefix)
	return c
}

// normalizePrefix drops leading slashes and ends a non-empty prefix with
// one.
func normalizePrefix(p string) string {
	p = strings.TrimLeft(p, "/")
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/"
	}
	return p
}

// ParseEndpoint splits an endpoint into the host[:port] the client wants
// and whether it uses TLS: http:// and https:// URLs say so, a bare host
// means https. A path, query or user information is refused.
func ParseEndpoint(endpoint string) (host string, secure bool, err error) {
	if endpoint == "" {
		return "", false, errors.New("an endpoint is required")
	}
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false, fmt.Errorf("endpoint %q: scheme must be http or https", endpoint)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false, fmt.Errorf("endpoint %q: want scheme://host[:port] and nothing more", endpoint)
	}
	return u.Host, u.Scheme == "https", nil
}

// Check validates the configuration without any I/O.
func (c Config) Check() error {
	if _, _, err := ParseEndpoint(c.Endpoint); err != nil {
		return fmt.Errorf("s3: %w", err)
	}
	if c.Bucket == "" {
		return errors.New("s3: a bucket is required")
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return errors.New("s3: access_key and secret_key go together")
	}
	if c.LeaseTTL < 0 || c.PollInterval < 0 || c.Timeout < 0 || c.RetryInterval < 0 || c.ChunkSize < 0 {
		return errors.New("s3: durations and sizes must not be negative")
	}
	return nil
}
