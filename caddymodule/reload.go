package caddymodule

import (
	"strconv"

	"go.uber.org/zap"

	"github.com/regcache/regcache/s3tier"
)

// A reload reuses the open cache of a storage directory (see stores), so
// the settings the cache was opened with stay until the last config using
// the directory is unloaded. max_size and max_idle apply live; the others
// a reload cannot apply, and says so.

// keptSetting is one setting an open cache keeps for its life, by its
// name in the config, with its effective value.
type keptSetting struct {
	name, value string
	// secret hides the values from the log: only the change is told.
	secret bool
}

// keptSettings returns the settings of s that an open cache keeps, in a
// fixed order, with the values the packages that own them run with (their
// WithDefaults).
func keptSettings(s settings) []keptSetting {
	o := s.cache.WithDefaults()
	scrubInterval, scrubRate := "off", "off"
	if o.ScrubInterval >= 0 {
		scrubInterval = durationText(o.ScrubInterval)
		scrubRate = strconv.FormatInt(o.ScrubRate, 10)
	}
	kept := []keptSetting{
		{name: "memory", value: strconv.FormatInt(o.MemoryBytes, 10)},
		{name: "max_downloads", value: strconv.Itoa(o.MaxFills)},
		{name: "fill_retries", value: strconv.Itoa(o.FillRetries)},
		{name: "fill_connections", value: strconv.Itoa(o.FillConnections)},
		{name: "fill_split_size", value: strconv.FormatInt(o.FillSplitSize, 10)},
		{name: "slow_source_rate", value: strconv.FormatInt(o.SlowSourceRate, 10)},
		{name: "ingest_max_size", value: strconv.FormatInt(o.IngestMaxBytes, 10)},
		{name: "ingest_max_age", value: durationText(o.IngestMaxAge)},
		{name: "scrub_interval", value: scrubInterval},
		{name: "scrub_rate", value: scrubRate},
	}
	return append(kept, keptS3(s.s3)...)
}

// keptS3 returns the shared bucket's settings: "s3" (on or off), then,
// with a bucket, each of its settings as the tier runs with them.
func keptS3(bucket *s3tier.Config) []keptSetting {
	if bucket == nil {
		return []keptSetting{{name: "s3", value: "off"}}
	}
	c := bucket.WithDefaults()
	return []keptSetting{
		{name: "s3", value: "on"},
		{name: "s3.endpoint", value: c.Endpoint},
		{name: "s3.bucket", value: c.Bucket},
		{name: "s3.region", value: c.Region},
		{name: "s3.prefix", value: c.Prefix},
		{name: "s3.path_style", value: strconv.FormatBool(c.PathStyle)},
		{name: "s3.lease_ttl", value: durationText(c.LeaseTTL)},
		{name: "s3.chunk_size", value: strconv.FormatInt(c.ChunkSize, 10)},
		{name: "s3.access_key", value: c.AccessKey, secret: true},
		{name: "s3.secret_key", value: c.SecretKey, secret: true},
	}
}

// noteKept logs, at Warn and once per setting, each setting of next that
// the open cache of storage keeps at another value: it applies at the next
// start (or once no config uses the directory).
func noteKept(logger *zap.Logger, storage string, running, next []keptSetting) {
	now := make(map[string]keptSetting, len(running))
	for _, k := range running {
		now[k.name] = k
	}
	for _, k := range next {
		r, ok := now[k.name]
		if !ok {
			// A bucket setting of a cache running without one: "s3"
			// already says it.
			continue
		}
		if r.value == k.value {
			continue
		}
		shown, want := r.value, k.value
		if k.secret {
			shown, want = "(not logged)", "(not logged, changed)"
		}
		logger.Warn("setting not applied: the open cache keeps its running value until the next start",
			zap.String("setting", k.name), zap.String("running", shown), zap.String("new", want),
			zap.String("storage", storage))
	}
}
