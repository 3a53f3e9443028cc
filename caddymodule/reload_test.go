package caddymodule

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/s3tier"
)

func TestNoteKept(t *testing.T) {
	bucket := &s3tier.Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b", AccessKey: "AKIA1", SecretKey: "s3cr3t"}
	tests := []struct {
		name            string
		running, next   settings
		want            []string // setting=running>new
		neverInTheLines []string
	}{
		{"nothing changed", settings{}, settings{}, nil, nil},
		{"a default spelled out is no change",
			settings{}, settings{cache: cache.Options{MemoryBytes: cache.DefaultMemoryBytes, MaxFills: cache.DefaultMaxFills, ScrubInterval: cache.DefaultScrubInterval}}, nil, nil},
		{"budget and idle limit apply live",
			settings{cache: cache.Options{MaxBytes: 1 << 30}}, settings{cache: cache.Options{MaxBytes: 2 << 30, MaxIdle: time.Hour}}, nil, nil},
		{"memory and max_downloads",
			settings{}, settings{cache: cache.Options{MemoryBytes: 128 << 20, MaxFills: 8}},
			[]string{"memory=67108864>134217728", "max_downloads=64>8"}, nil},
		{"scrub turned off",
			settings{}, settings{cache: cache.Options{ScrubInterval: -1}},
			[]string{"scrub_interval=7d>off", "scrub_rate=52428800>off"}, nil},
		{"a bucket's defaults spelled out are no change",
			settings{s3: bucket}, settings{s3: &s3tier.Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b", AccessKey: "AKIA1", SecretKey: "s3cr3t",
				Region: s3tier.DefaultRegion, LeaseTTL: s3tier.DefaultLeaseTTL, ChunkSize: s3tier.DefaultChunkSize}}, nil, nil},
		{"the bucket's lease and chunks",
			settings{s3: bucket}, settings{s3: &s3tier.Config{Endpoint: "http://127.0.0.1:9000", Bucket: "b", AccessKey: "AKIA1", SecretKey: "s3cr3t",
				LeaseTTL: time.Minute, ChunkSize: 16 << 20}},
			[]string{"s3.lease_ttl=30s>1m0s", "s3.chunk_size=8388608>16777216"}, []string{"s3cr3t", "AKIA1"}},
		{"fill settings",
			settings{}, settings{cache: cache.Options{FillRetries: 9, FillConnections: 1, SlowSourceRate: 1 << 20, IngestMaxAge: time.Hour}},
			[]string{"fill_retries=5>9", "fill_connections=4>1", "slow_source_rate=2097152>1048576", "ingest_max_age=1d>1h0m0s"}, nil},
		{"a bucket added", settings{}, settings{s3: bucket}, []string{"s3=off>on"}, []string{"s3cr3t", "AKIA1"}},
		{"a bucket removed", settings{s3: bucket}, settings{}, []string{"s3=on>off"}, []string{"s3cr3t", "AKIA1"}},
		{"the bucket's keys and name changed",
			settings{s3: bucket}, settings{s3: &s3tier.Config{Endpoint: "http://127.0.0.1:9000", Bucket: "c", AccessKey: "AKIA2", SecretKey: "0ther"}},
			[]string{"s3.bucket=b>c", "s3.access_key=(not logged)>(not logged, changed)", "s3.secret_key=(not logged)>(not logged, changed)"},
			[]string{"s3cr3t", "0ther", "AKIA1", "AKIA2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			noteKept(zap.New(core), "/cache", keptSettings(tc.running), keptSettings(tc.next))
			var got []string
			for _, e := range logs.All() {
				f := e.ContextMap()
				if e.Level != zapcore.WarnLevel || f["storage"] != "/cache" {
					t.Errorf("logged %v at %s, want Warn naming the storage", f, e.Level)
				}
				got = append(got, f["setting"].(string)+"="+f["running"].(string)+">"+f["new"].(string))
				for _, secret := range tc.neverInTheLines {
					for _, v := range f {
						if s, ok := v.(string); ok && strings.Contains(s, secret) {
							t.Errorf("a log line shows %q: %v", secret, f)
						}
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("warnings %q, want %q", got, tc.want)
			}
		})
	}
}
