package caddymodule

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/s3tier"
	"github.com/regcache/regcache/schedule"
	"github.com/regcache/regcache/upstream"
)

// metricsNamespace prefixes every metric of the module: caddy_registry_cache_*.
const (
	metricsNamespace = "caddy"
	metricsSubsystem = "registry_cache"
)

// upstreamMetrics count the exchanges with upstream hosts. They are shared
// by every handler of a config (one registry), labelled by upstream name.
type upstreamMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newUpstreamMetrics registers the upstream metrics in reg, or returns the
// ones another handler of the same config registered.
func newUpstreamMetrics(reg prometheus.Registerer) (*upstreamMetrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "upstream_requests_total",
		Help: "HTTP exchanges with upstream hosts, by upstream, kind (registry, token, redirect) and status (0: no answer).",
	}, []string{"upstream", "kind", "status"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "upstream_request_duration_seconds",
		Help:    "Time until an upstream host's response headers (or failure), by upstream and kind.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
	}, []string{"upstream", "kind"})
	var err error
	if requests, err = registerOrExisting(reg, requests); err != nil {
		return nil, err
	}
	if duration, err = registerOrExisting(reg, duration); err != nil {
		return nil, err
	}
	return &upstreamMetrics{requests: requests, duration: duration}, nil
}

// observe records one exchange; it is an upstream.Options.OnResponse.
func (um *upstreamMetrics) observe(ex upstream.Exchange) {
	um.requests.WithLabelValues(ex.Upstream, ex.Kind, strconv.Itoa(ex.Status)).Inc()
	um.duration.WithLabelValues(ex.Upstream, ex.Kind).Observe(ex.Duration.Seconds())
}

// registerOrExisting registers c, or returns the equal collector already
// registered (a second handler of the same config).
func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// cacheCollector exports the figures of one cache directory and the
// handler serving it, read at each scrape. The directory is a constant
// "storage" label, so that several sites with their own caches each have
// their series. No metric carries a repository, tag or digest.
type cacheCollector struct {
	store     *cache.Store
	tier      *s3tier.Tier // nil: no shared bucket
	mirror    *mirror.Mirror
	upstreams []*upstream.Client

	requests, servedBytes, staleServes, rateLimitHolds, negativeHits, fills, fillReaders,
	fillResumes, fillRestarts, fillSplits, partialsContinued, prefetches, sourceSwitches,
	evictions, evictedBytes, diskUsed, diskBudget, objects, notStored, unwritable,
	rateLimitRemaining, policyRefusals, loginThrottled, internalRefusals *prometheus.Desc

	sharedFills, sharedTakeOvers, sharedUploadFailures, sharedUnavailable *prometheus.Desc

	idleEvictions, pinnedObjects *prometheus.Desc
	// The sync rules' figures; scheduler is nil without rules.
	scheduler                                                             *schedule.Scheduler
	syncRuns, syncBytes, syncLastRun, syncNextRun, syncPaused, syncImages *prometheus.Desc
}

// newCacheCollector describes the metrics of the cache in storage.
func newCacheCollector(storage string, store *cache.Store, tier *s3tier.Tier, m *mirror.Mirror, upstreams []*upstream.Client, sched *schedule.Scheduler) *cacheCollector {
	constLabels := prometheus.Labels{"storage": storage}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, name), help, labels, constLabels)
	}
	return &cacheCollector{
		store: store, tier: tier, mirror: m, upstreams: upstreams, scheduler: sched,
		idleEvictions: desc("idle_evictions_total", "Objects evicted for going unread longer than max_idle."),
		pinnedObjects: desc("pinned_objects", "Objects (manifests and blobs) that sync rules keep from eviction."),
		// The rule label is a rule of the config (its image as
		// configured), never something a client chose.
		syncRuns: desc("sync_runs_total", "Runs of a sync rule, by result (ok, paused, failed).", "rule", "result"),
		syncBytes: desc("sync_fetched_bytes_total",
			"Blob bytes sync rules fetched from upstreams.", "rule"),
		syncLastRun: desc("sync_last_run_timestamp_seconds", "When a sync rule last ran (Unix time; 0: never).", "rule"),
		syncNextRun: desc("sync_next_run_timestamp_seconds", "When a sync rule runs next (Unix time).", "rule"),
		syncPaused: desc("sync_paused",
			"1 while a sync rule is paused because the upstream's pull budget is spent; its next run resumes.", "rule"),
		syncImages: desc("sync_images", "Images a sync rule keeps.", "rule"),
		requests: desc("requests_total",
			"Registry API requests answered, by kind (manifest, blob, tags, referrers) and result (hit, miss, stale, error).", "kind", "result"),
		servedBytes: desc("served_bytes_total",
			"Response bytes sent, by source: cache, or upstream (content fetched for the request).", "source"),
		staleServes: desc("stale_serves_total",
			"Tags served with their last known digest because the upstream could not confirm them."),
		rateLimitHolds: desc("rate_limit_holds_total",
			"Manifest GETs not sent because the upstream's pull budget was at its reserve."),
		negativeHits: desc("negative_hits_total",
			"Manifest requests answered with a remembered upstream 404."),
		fills:       desc("fills_in_flight", "Downloads from upstreams into the cache in progress."),
		fillReaders: desc("fill_waiting_clients", "Clients streaming from downloads in progress."),
		fillResumes: desc("fill_resumes_total",
			"Downloads continued with a Range request from the byte they got to, after their transfer broke."),
		fillRestarts: desc("fill_restarts_total",
			"Downloads taken from the first byte again because the upstream ignored or botched a Range."),
		fillSplits: desc("fill_splits_total",
			"Downloads of large blobs fetched as several ranges at once (fill_connections)."),
		partialsContinued: desc("partials_continued_total",
			"Downloads that continued a partial download an earlier download (or run of Caddy) left in ingest/."),
		sourceSwitches: desc("fill_source_switches_total",
			"Downloads that turned to another source of the blob (another client's upstream or credentials, or the next endpoint) after theirs failed, stalled or was slow."),
		prefetches: desc("prefetches_total",
			"Blob downloads started ahead of the clients, for the config and layers of an image manifest fetched for a client."),
		evictions: desc("evictions_total", "Objects evicted to keep the cache within max_size."),
		evictedBytes: desc("evicted_bytes_total",
			"Bytes evicted to keep the cache within max_size."),
		diskUsed:   desc("disk_used_bytes", "Bytes of the objects stored in the cache."),
		diskBudget: desc("disk_budget_bytes", "The cache's disk budget (max_size)."),
		objects:    desc("objects", "Objects (blobs and manifests) stored in the cache."),
		notStored: desc("not_stored_total",
			"Contents served without being stored: disk full or unwritable, or larger than the budget."),
		unwritable: desc("disk_unwritable",
			"1 while the cache disk is full or unwritable and content is streamed without storing."),
		policyRefusals: desc("policy_refusals_total",
			"Requests the edge policy refused (action denied) or served in audit mode despite a failed signature rule (action audited), by rule (allow, deny#N, deny_digest#N, verify#N).", "rule", "action"),
		rateLimitRemaining: desc("rate_limit_remaining",
			"The pull budget an upstream last reported (ratelimit-remaining), when it reports one.", "upstream"),
		loginThrottled: desc("login_throttled_total",
			"Credential checks of clients logging in refused with 429 by login_limit, without asking the upstream."),
		internalRefusals: desc("internal_refusals_total",
			"Connections to internal addresses an upstream redirected the mirror to or named as its token realm, refused (allowed_networks).", "upstream"),
		sharedFills: desc("shared_fills_total",
			"Downloads into the local cache with a shared bucket, by source: bucket (the shared copy), node (another node's download, streamed), upstream (downloaded here for every node), alone (from the upstream while the bucket was unreachable).", "source"),
		sharedTakeOvers: desc("shared_takeovers_total",
			"Downloads of a dead or stalled node taken over after its lease expired."),
		sharedUploadFailures: desc("shared_upload_failures_total",
			"Verified downloads that could not be uploaded to the shared bucket."),
		sharedUnavailable: desc("shared_unavailable",
			"1 while the shared bucket is bypassed after it was found unreachable."),
	}
}

// Describe sends the descriptions of the cache metrics.
func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.servedBytes, c.staleServes, c.rateLimitHolds,
		c.negativeHits, c.fills, c.fillReaders, c.fillResumes, c.fillRestarts, c.fillSplits,
		c.partialsContinued, c.prefetches, c.sourceSwitches, c.evictions, c.evictedBytes, c.diskUsed,
		c.diskBudget, c.objects, c.notStored, c.unwritable, c.rateLimitRemaining, c.policyRefusals,
		c.loginThrottled, c.internalRefusals,
		c.sharedFills, c.sharedTakeOvers, c.sharedUploadFailures, c.sharedUnavailable,
		c.idleEvictions, c.pinnedObjects, c.syncRuns, c.syncBytes, c.syncLastRun, c.syncNextRun,
		c.syncPaused, c.syncImages} {
		ch <- d
	}
}

// Collect reads the figures of the cache, the mirror and the upstreams.
func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	ms := c.mirror.Stats()
	for _, rc := range ms.Requests {
		counter(c.requests, rc.Count, rc.Kind, rc.Result)
	}
	counter(c.servedBytes, ms.BytesFromCache, "cache")
	counter(c.servedBytes, ms.BytesFromUpstream, "upstream")
	counter(c.staleServes, ms.StaleServes)
	counter(c.rateLimitHolds, ms.RateLimitHolds)
	counter(c.negativeHits, ms.NegativeHits)
	for _, rs := range c.mirror.PolicyStats() {
		counter(c.policyRefusals, rs.Refused, rs.ID, "denied")
		if rs.Kind == "verify" {
			counter(c.policyRefusals, rs.Audited, rs.ID, "audited")
		}
	}
	counter(c.loginThrottled, ms.LoginThrottled)
	st := c.store.Stats()
	gauge(c.fills, int64(st.Fills))
	gauge(c.fillReaders, int64(st.FillReaders))
	counter(c.fillResumes, st.FillResumes)
	counter(c.fillRestarts, st.FillRestarts)
	counter(c.fillSplits, st.FillSplits)
	counter(c.partialsContinued, st.PartialsContinued)
	counter(c.prefetches, st.Prefetches)
	counter(c.sourceSwitches, st.SourceSwitches)
	counter(c.evictions, st.Evictions)
	counter(c.evictedBytes, st.EvictedBytes)
	gauge(c.diskUsed, st.UsedBytes)
	gauge(c.diskBudget, st.BudgetBytes)
	gauge(c.objects, st.Objects)
	counter(c.notStored, st.NotStored)
	unwritable := int64(0)
	if st.Unwritable {
		unwritable = 1
	}
	gauge(c.unwritable, unwritable)
	counter(c.idleEvictions, st.IdleEvictions)
	gauge(c.pinnedObjects, int64(st.PinnedObjects))
	if c.scheduler != nil {
		for _, rs := range c.scheduler.Status() {
			for _, res := range []schedule.Result{schedule.ResultOK, schedule.ResultPaused, schedule.ResultFailed} {
				counter(c.syncRuns, rs.Runs[res], rs.Rule, string(res))
			}
			counter(c.syncBytes, rs.TotalBytes, rs.Rule)
			last := int64(0)
			if !rs.LastRun.IsZero() {
				last = rs.LastRun.Unix()
			}
			gauge(c.syncLastRun, last, rs.Rule)
			gauge(c.syncNextRun, rs.NextRun.Unix(), rs.Rule)
			paused := int64(0)
			if rs.Result == schedule.ResultPaused {
				paused = 1
			}
			gauge(c.syncPaused, paused, rs.Rule)
			gauge(c.syncImages, int64(rs.Images), rs.Rule)
		}
	}
	for _, u := range c.upstreams {
		if rl, ok := u.RateLimit(); ok {
			gauge(c.rateLimitRemaining, int64(rl.Remaining), u.Name())
		}
		counter(c.internalRefusals, u.InternalRefusals(), u.Name())
	}
	// Only a cache with a shared bucket has these.
	if c.tier != nil {
		ss := c.tier.Stats()
		counter(c.sharedFills, ss.FromBucket, "bucket")
		counter(c.sharedFills, ss.Followed, "node")
		counter(c.sharedFills, ss.Published, "upstream")
		counter(c.sharedFills, ss.Alone, "alone")
		counter(c.sharedTakeOvers, ss.TakeOvers)
		counter(c.sharedUploadFailures, ss.UploadFailures)
		unavailable := int64(0)
		if ss.Unavailable {
			unavailable = 1
		}
		gauge(c.sharedUnavailable, unavailable)
	}
}

// Interface guards
var _ prometheus.Collector = (*cacheCollector)(nil)
