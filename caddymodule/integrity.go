package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
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

// integrityStats renders the checks of content at rest of a store.
func integrityStats(is cache.IntegrityStats) IntegrityStats {
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
