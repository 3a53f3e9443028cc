package caddymodule

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestProvisionChecksBeforeOpening: a bad value fails Provision before the
// storage directory is created, so nothing is opened for a config that
// cannot load.
func TestProvisionChecksBeforeOpening(t *testing.T) {
	tests := []struct {
		name    string
		h       Handler
		wantErr string
	}{
		{"negative max_size", Handler{MaxSize: -1}, "max_size"},
		{"negative memory", Handler{Memory: -1}, "memory"},
		{"negative max_downloads", Handler{MaxDownloads: -1}, "max_downloads"},
		{"negative fill_retries", Handler{FillRetries: -2}, "fill_retries"},
		{"negative scrub_rate", Handler{ScrubRate: -5}, "scrub_rate"},
		{"negative tag_ttl", Handler{TagTTL: caddy.Duration(-time.Second)}, "tag_ttl"},
		{"negative max_idle", Handler{MaxIdle: caddy.Duration(-time.Hour)}, "max_idle"},
		{"negative stall_timeout", Handler{StallTimeout: caddy.Duration(-time.Second)}, "stall_timeout"},
		{"relative token_realm", Handler{TokenRealm: "/v2/_token"}, "token_realm"},
		{"s3 without a bucket", Handler{S3: &S3Storage{Endpoint: "http://127.0.0.1:9"}}, "bucket"},
		{"s3 lease too short", Handler{S3: &S3Storage{Endpoint: "http://127.0.0.1:9", Bucket: "b", LeaseTTL: caddy.Duration(time.Second)}}, "lease_ttl"},
		{"s3 access key without a secret", Handler{S3: &S3Storage{Endpoint: "http://127.0.0.1:9", Bucket: "b", AccessKey: "a"}}, "secret_key"},
		{"s3 endpoint with a path", Handler{S3: &S3Storage{Endpoint: "http://127.0.0.1:9/x", Bucket: "b"}}, "endpoint"},
		{"bad allowed network", Handler{AllowedNetworks: []string{"10.0.0.0/33"}}, "allowed_networks"},
		{"negative login burst", Handler{LoginLimit: &LoginLimit{Burst: -1}}, "login_limit"},
		{"upstream twice", Handler{Upstreams: []Upstream{{Name: "docker.io"}, {Name: "registry-1.docker.io"}}}, "twice"},
		{"upstream URL not absolute", Handler{Upstreams: []Upstream{{Name: "a.io", URLs: []string{"a.io"}}}}, "absolute"},
		{"default not configured", Handler{Default: "b.io", Upstreams: []Upstream{{Name: "a.io"}}}, "default upstream"},
		{"sync without image", Handler{Sync: []SyncRule{{}}}, "sync rule"},
		{"sync too often", Handler{Sync: []SyncRule{{Image: "alpine", Every: caddy.Duration(time.Second)}}}, "alpine"},
		{"sync of a registry not mirrored", Handler{Upstreams: []Upstream{{Name: "docker.io"}}, Sync: []SyncRule{{Image: "ghcr.io/owner/app"}}}, "not among the upstreams"},
		{"sync of a bad name", Handler{Sync: []SyncRule{{Image: "docker.io/Alpine"}}}, "sync docker.io/Alpine"},
		{"verify key missing", Handler{Verify: []Verify{{Patterns: []string{"docker.io/**"}, Keys: []string{"/nonexistent/cosign.pub"}}}}, "reading key"},
		{"verify mode unknown", Handler{Verify: []Verify{{Patterns: []string{"docker.io/**"}, Mode: "warn"}}}, "mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			h := tc.h
			h.Storage = dir
			ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
			defer cancel()
			err := h.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Provision = %v, want an error about %s", err, tc.wantErr)
			}
			if err := h.Cleanup(); err != nil { // as Caddy does after a failed Provision
				t.Errorf("Cleanup: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the storage directory exists after the failed Provision (%v)", err)
			}
			if _, ok := stores.References(dir); ok {
				t.Errorf("a cache was opened for %s", dir)
			}
		})
	}
}
