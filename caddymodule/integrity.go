package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/regcache/regcache/cache"
)

// IntegrityStats are the checks of one cache's content at rest, as
// GET /registry_cache/stats reports them.
type IntegrityStats struct {
	// CorruptObjects counts the objects found corrupt (their content did
	// not match their digest) and removed since the cache opened, by the
	// scrub, a verify with repair, or a read.
	CorruptObjects int64 `json:"corrupt_objects"`
	// CorruptBytes is their size.
	CorruptBytes int64 `json:"corrupt_bytes"`
	// Scrub is the background scrub.
	Scrub ScrubStats `json:"scrub"`
}

// ScrubStats are the background scrub's settings and progress.
type ScrubStats struct {
	// Enabled is false when scrub_interval is off.
	Enabled bool `json:"enabled"`
	// IntervalSeconds and RateBytes are its settings.
	IntervalSeconds int64 `json:"interval_seconds,omitempty"`
	RateBytes       int64 `json:"rate_bytes,omitempty"`
	// Running is true during a pass.
	Running bool `json:"running"`
	// Passes counts the passes completed since the cache opened.
	Passes int64 `json:"passes"`
	// CheckedObjects and CheckedBytes count what the scrub hashed since
	// the cache opened.
	CheckedObjects int64 `json:"checked_objects"`
	CheckedBytes   int64 `json:"checked_bytes"`
	// LastPassStarted and LastPassFinished are the last pass's times,
	// absent when there was none.
	LastPassStarted  *time.Time `json:"last_pass_started,omitempty"`
	LastPassFinished *time.Time `json:"last_pass_finished,omitempty"`
}

// integrityStats reports the checks of content at rest of a store.
func integrityStats(s *cache.Store) IntegrityStats {
	is := s.IntegrityStats()
	sc := is.Scrub
	out := IntegrityStats{
		CorruptObjects: is.CorruptObjects, CorruptBytes: is.CorruptBytes,
		Scrub: ScrubStats{Enabled: sc.Enabled, IntervalSeconds: int64(sc.Interval / time.Second), RateBytes: sc.Rate,
			Running: sc.Running, Passes: sc.Passes, CheckedObjects: sc.CheckedObjects, CheckedBytes: sc.CheckedBytes},
	}
	if !sc.LastPassStarted.IsZero() {
		t := sc.LastPassStarted
		out.Scrub.LastPassStarted = &t
	}
	if !sc.LastPassFinished.IsZero() {
		t := sc.LastPassFinished
		out.Scrub.LastPassFinished = &t
	}
	return out
}

// integrityCollector exports the checks of one cache's content at rest.
type integrityCollector struct {
	store                                          *cache.Store
	corrupt, corruptBytes, scrubbedBytes, lastPass *prometheus.Desc
}

// newIntegrityCollector describes the metrics of the checks of the cache
// in storage.
func newIntegrityCollector(storage string, store *cache.Store) *integrityCollector {
	constLabels := prometheus.Labels{"storage": storage}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, metricsSubsystem, name), help, nil, constLabels)
	}
	return &integrityCollector{
		store: store,
		corrupt: desc("corrupt_objects_total",
			"Objects found corrupt at rest (content not matching the digest) and removed, by the scrub, a verify with repair, or a read."),
		corruptBytes:  desc("corrupt_bytes_total", "Bytes of the objects found corrupt at rest and removed."),
		scrubbedBytes: desc("scrubbed_bytes_total", "Bytes the background scrub hashed."),
		lastPass: desc("scrub_last_pass_timestamp_seconds",
			"When the last complete scrub pass finished (Unix time); 0 when none did."),
	}
}

// Describe sends the descriptions of the metrics.
func (c *integrityCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.corrupt, c.corruptBytes, c.scrubbedBytes, c.lastPass} {
		ch <- d
	}
}

// Collect reads the figures of the checks.
func (c *integrityCollector) Collect(ch chan<- prometheus.Metric) {
	is := c.store.IntegrityStats()
	ch <- prometheus.MustNewConstMetric(c.corrupt, prometheus.CounterValue, float64(is.CorruptObjects))
	ch <- prometheus.MustNewConstMetric(c.corruptBytes, prometheus.CounterValue, float64(is.CorruptBytes))
	ch <- prometheus.MustNewConstMetric(c.scrubbedBytes, prometheus.CounterValue, float64(is.Scrub.CheckedBytes))
	last := 0.0
	if !is.Scrub.LastPassFinished.IsZero() {
		last = float64(is.Scrub.LastPassFinished.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(c.lastPass, prometheus.GaugeValue, last)
}

// registerIntegrityMetrics registers the checks' metrics of the cache in
// dir, unless another handler of the config did.
func registerIntegrityMetrics(reg prometheus.Registerer, dir string, store *cache.Store) error {
	err := reg.Register(newIntegrityCollector(dir, store))
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return nil
	}
	return err
}

// VerifyRequest is the body of POST /registry_cache/verify.
type VerifyRequest struct {
	// Repair removes the corrupt objects found, so that the next request
	// fetches them again. Default: false, only report them.
	Repair bool `json:"repair,omitempty"`
	// Rate bounds the reads in bytes per second. Default: as fast as the
	// disk goes.
	Rate int64 `json:"rate,omitempty"`
	// Storage limits the check to the cache in this directory. Default:
	// every cache of the running config.
	Storage string `json:"storage,omitempty"`
}

// VerifyResponse is the answer to a verify, per cache.
type VerifyResponse struct {
	// Caches has one entry per cache checked.
	Caches []CacheVerify `json:"caches"`
}

// CacheVerify is what a verify found in one cache.
type CacheVerify struct {
	// Storage is the cache directory.
	Storage string `json:"storage"`
	cache.VerifyReport
}

// serveVerify answers POST /registry_cache/verify: it hashes every object
// of the caches against its digest and answers when done (at the disk's
// speed, or the rate asked).
func (a *AdminAPI) serveVerify(w http.ResponseWriter, r *http.Request) error {
	var req VerifyRequest
	if err := decodePost(r, &req, true); err != nil {
		return err
	}
	if req.Rate < 0 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("rate must not be negative")}
	}
	resp := VerifyResponse{Caches: []CacheVerify{}}
	for _, h := range liveHandlers() {
		if req.Storage != "" && req.Storage != h.dir {
			continue
		}
		rep, err := h.store.Verify(r.Context(), cache.VerifyOptions{Repair: req.Repair, Rate: req.Rate})
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("verifying %s: %w", h.dir, err)}
		}
		h.logger.Info("verified the cache", zap.String("storage", h.dir), zap.Int64("objects", rep.Objects),
			zap.Int64("bytes", rep.Bytes), zap.Int("corrupt", len(rep.Corrupt)), zap.Bool("repair", req.Repair))
		resp.Caches = append(resp.Caches, CacheVerify{Storage: h.dir, VerifyReport: rep})
	}
	if req.Storage != "" && len(resp.Caches) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no registry cache in %s", req.Storage)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

// Interface guards
var _ prometheus.Collector = (*integrityCollector)(nil)
