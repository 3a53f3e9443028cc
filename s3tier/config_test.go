package s3tier

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		name, in   string
		host       string
		secure, ok bool
	}{
		{"http URL", "http://127.0.0.1:7070", "127.0.0.1:7070", false, true},
		{"https URL", "https://s3.example.com", "s3.example.com", true, true},
		{"bare host means https", "minio.local:9000", "minio.local:9000", true, true},
		{"trailing slash", "http://h:1/", "h:1", false, true},
		{"empty", "", "", false, false},
		{"path", "http://h/bucket", "", false, false},
		{"query", "http://h/?x=1", "", false, false},
		{"user info", "http://k:s@h", "", false, false},
		{"other scheme", "ftp://h", "", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, secure, err := ParseEndpoint(tc.in)
			if (err == nil) != tc.ok || host != tc.host || secure != tc.secure {
				t.Errorf("ParseEndpoint(%q) = %q, %v, %v; want %q, %v, ok=%v", tc.in, host, secure, err, tc.host, tc.secure, tc.ok)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	good := Config{Endpoint: "http://h:1", Bucket: "b", AccessKey: "k", SecretKey: "s"}
	tests := []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"complete", func(*Config) {}, true},
		{"anonymous", func(c *Config) { c.AccessKey, c.SecretKey = "", "" }, true},
		{"no bucket", func(c *Config) { c.Bucket = "" }, false},
		{"no endpoint", func(c *Config) { c.Endpoint = "" }, false},
		{"key without secret", func(c *Config) { c.SecretKey = "" }, false},
		{"negative lease", func(c *Config) { c.LeaseTTL = -1 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			if err := c.Check(); (err == nil) != tc.ok {
				t.Errorf("Check() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	d := digest.Digest("sha256:" + "ab" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd")
	tests := []struct {
		name, prefix, got, want string
	}{}
	for _, prefix := range []string{"", "cache", "/cache/"} {
		tier, err := New(Config{Endpoint: "http://h:1", Bucket: "b", Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		p := normalizePrefix(prefix)
		tests = append(tests,
			struct{ name, prefix, got, want string }{"blob", prefix, tier.blobKey(d), p + "blobs/sha256/" + d.Encoded()},
			struct{ name, prefix, got, want string }{"tag", prefix, tier.tagKey("docker.io", "library/alpine", "3.19"), p + "tags/docker.io/library/alpine/_tags/3.19"},
			struct{ name, prefix, got, want string }{"lease", prefix, tier.leaseKey(d), p + "fills/sha256/" + d.Encoded() + "/lease"},
			struct{ name, prefix, got, want string }{"chunk", prefix, tier.chunkKey(d, "id1", 12), p + "fills/sha256/" + d.Encoded() + "/id1/00000012"},
		)
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s key with prefix %q = %q, want %q", tc.name, tc.prefix, tc.got, tc.want)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		get  func(Config) any
		want any
	}{
		{"region", Config{}, func(c Config) any { return c.Region }, DefaultRegion},
		{"region set", Config{Region: "eu-west-1"}, func(c Config) any { return c.Region }, "eu-west-1"},
		{"lease ttl", Config{}, func(c Config) any { return c.LeaseTTL }, DefaultLeaseTTL},
		{"lease ttl set", Config{LeaseTTL: 5 * time.Second}, func(c Config) any { return c.LeaseTTL }, 5 * time.Second},
		{"chunk size", Config{}, func(c Config) any { return c.ChunkSize }, int64(DefaultChunkSize)},
		{"chunk size set", Config{ChunkSize: 6 << 20}, func(c Config) any { return c.ChunkSize }, int64(6 << 20)},
		{"poll interval", Config{}, func(c Config) any { return c.PollInterval }, DefaultPollInterval},
		{"poll interval set", Config{PollInterval: time.Second}, func(c Config) any { return c.PollInterval }, time.Second},
		{"timeout", Config{}, func(c Config) any { return c.Timeout }, DefaultTimeout},
		{"timeout set", Config{Timeout: time.Minute}, func(c Config) any { return c.Timeout }, time.Minute},
		{"retry interval", Config{}, func(c Config) any { return c.RetryInterval }, DefaultRetryInterval},
		{"retry interval set", Config{RetryInterval: time.Hour}, func(c Config) any { return c.RetryInterval }, time.Hour},
		{"logger", Config{}, func(c Config) any { return c.Logger != nil }, true},
		{"clock", Config{}, func(c Config) any { return c.Now != nil }, true},
		{"prefix", Config{Prefix: "/a/b"}, func(c Config) any { return c.Prefix }, "a/b/"},
		{"no prefix", Config{}, func(c Config) any { return c.Prefix }, ""},
		{"kept as is", Config{Endpoint: "h:1", Bucket: "b", AccessKey: "k", SecretKey: "s", PathStyle: true},
			func(c Config) any { return [5]any{c.Endpoint, c.Bucket, c.AccessKey, c.SecretKey, c.PathStyle} },
			[5]any{"h:1", "b", "k", "s", true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.get(tc.in.WithDefaults()); got != tc.want {
				t.Errorf("WithDefaults() = %v, want %v", got, tc.want)
			}
		})
	}
}
