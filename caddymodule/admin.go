package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/schedule"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// live is the set of provisioned handlers, which the admin API reports
// on. With the pool of open caches, it is the package's only state.
var live = struct {
	mu       sync.Mutex
	handlers map[*Handler]struct{}
}{handlers: make(map[*Handler]struct{})}

// addLive records a provisioned handler.
func addLive(h *Handler) {
	live.mu.Lock()
	live.handlers[h] = struct{}{}
	live.mu.Unlock()
}

// removeLive forgets a handler that is being cleaned up.
func removeLive(h *Handler) {
	live.mu.Lock()
	delete(live.handlers, h)
	live.mu.Unlock()
}

// liveHandlers returns the provisioned handlers, one per storage
// directory (a reload briefly has two handlers of one directory; the
// newest answers), sorted by directory.
func liveHandlers() []*Handler {
	live.mu.Lock()
	defer live.mu.Unlock()
	byDir := map[string]*Handler{}
	for h := range live.handlers {
		if prev, ok := byDir[h.dir]; !ok || h.provisioned.After(prev.provisioned) {
			byDir[h.dir] = h
		}
	}
	out := make([]*Handler, 0, len(byDir))
	for _, h := range byDir {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *Handler) int {
		switch {
		case a.dir < b.dir:
			return -1
		case a.dir > b.dir:
			return 1
		}
		return 0
	})
	return out
}

// AdminAPI is the admin.api.registry_cache module: the routes of Caddy's
// admin endpoint that report on the registry caches of the running config.
//
//	GET  /registry_cache/               the status page (HTML)
//	GET  /registry_cache/stats          figures of every cache and its upstreams
//	GET  /registry_cache/repositories   what every cache holds, per repository
//	POST /registry_cache/purge          {"image": "..."} or {"repository": "..."}
//	POST /registry_cache/warm           {"images": [...], "platforms": [...]}
//	POST /registry_cache/verify         {"repair": true} checks content at rest
//	POST /registry_cache/sync           {"rule": "..."}: run a sync rule (all without one) now
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.registry_cache",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes of the module.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/registry_cache/", Handler: caddy.AdminHandlerFunc(a.serveStatusPage)},
		{Pattern: "/registry_cache/stats", Handler: caddy.AdminHandlerFunc(a.serveStats)},
		{Pattern: "/registry_cache/repositories", Handler: caddy.AdminHandlerFunc(a.serveRepositories)},
		{Pattern: "/registry_cache/purge", Handler: caddy.AdminHandlerFunc(a.servePurge)},
		{Pattern: "/registry_cache/warm", Handler: caddy.AdminHandlerFunc(a.serveWarm)},
		{Pattern: "/registry_cache/verify", Handler: caddy.AdminHandlerFunc(a.serveVerify)},
		{Pattern: "/registry_cache/sync", Handler: caddy.AdminHandlerFunc(a.serveSync)},
	}
}

// StatsResponse is the body of GET /registry_cache/stats.
type StatsResponse struct {
	// Caches has one entry per cache directory of the running config.
	Caches []CacheStats `json:"caches"`
}

// CacheStats are the figures of one cache directory and its handler.
type CacheStats struct {
	// Storage is the cache directory.
	Storage string `json:"storage"`
	// Objects is the number of stored blobs and manifests.
	Objects int64 `json:"objects"`
	// UsedBytes is the size of the stored objects.
	UsedBytes int64 `json:"used_bytes"`
	// BudgetBytes is max_size.
	BudgetBytes int64 `json:"budget_bytes"`
	// ReservedBytes is the announced size of downloads in progress.
	ReservedBytes int64 `json:"reserved_bytes"`
	// Evictions and EvictedBytes count eviction since the cache opened.
	Evictions    int64 `json:"evictions"`
	EvictedBytes int64 `json:"evicted_bytes"`
	// IdleEvictions counts the objects evicted for max_idle since the
	// cache opened (their bytes are in EvictedBytes).
	IdleEvictions int64 `json:"idle_evictions"`
	// MaxIdleSeconds is max_idle; 0 when not set.
	MaxIdleSeconds int64 `json:"max_idle_seconds"`
	// PinnedObjects is the number of objects sync rules keep.
	PinnedObjects int `json:"pinned_objects"`
	// Sync is the status of every sync rule.
	Sync []schedule.Status `json:"sync,omitempty"`
	// NotStored counts contents served without being stored.
	NotStored int64 `json:"not_stored"`
	// Unwritable is true while the disk refuses writes.
	Unwritable bool `json:"unwritable"`
	// Fills and FillReaders are the downloads in progress and the clients
	// streaming from them.
	Fills       int `json:"fills"`
	FillReaders int `json:"fill_readers"`
	// FillResumes, FillRestarts, FillSplits, PartialsContinued,
	// SourceSwitches and Prefetches count, since the cache opened, the
	// downloads continued from their last byte, taken from the first byte
	// again, fetched in several ranges, continued from a partial download
	// in ingest/, turned to another source, and started by prefetch.
	FillResumes       int64 `json:"fill_resumes"`
	FillRestarts      int64 `json:"fill_restarts"`
	FillSplits        int64 `json:"fill_splits"`
	PartialsContinued int64 `json:"partials_continued"`
	SourceSwitches    int64 `json:"source_switches"`
	Prefetches        int64 `json:"prefetches"`
	// Requests counts answered requests: kind → result → count.
	Requests map[string]map[string]int64 `json:"requests"`
	// BytesFromCache and BytesFromUpstream count response bytes by source.
	BytesFromCache    int64 `json:"bytes_from_cache"`
	BytesFromUpstream int64 `json:"bytes_from_upstream"`
	// HitRatio is the share of blob and manifest requests answered from
	// the cache (hits and stale serves); 0 before any.
	HitRatio float64 `json:"hit_ratio"`
	// StaleServes, RateLimitHolds and NegativeHits count the degraded
	// answers: stale tags, GETs held back by the pull budget, remembered
	// 404s.
	StaleServes    int64 `json:"stale_serves"`
	RateLimitHolds int64 `json:"rate_limit_holds"`
	NegativeHits   int64 `json:"negative_hits"`
	// Upstreams are the registries of the handler.
	Upstreams []UpstreamStats `json:"upstreams"`
	// Integrity is what the checks of content at rest found.
	Integrity IntegrityStats `json:"integrity"`
	// Policy are the edge policy's rules with their refusals; none
	// without a policy.
	Policy []access.RuleStats `json:"policy,omitempty"`
}

// UpstreamStats are the health and pull budget of one upstream.
type UpstreamStats struct {
	// Name is the registry's name.
	Name string `json:"name"`
	// Endpoints are its endpoints in order, with their health.
	Endpoints []EndpointStats `json:"endpoints"`
	// RateLimit is the pull budget it last reported; absent when it
	// reports none.
	RateLimit *RateLimitStats `json:"rate_limit,omitempty"`
}

// EndpointStats is the health of one endpoint.
type EndpointStats struct {
	// URL is the endpoint's base URL.
	URL string `json:"url"`
	// Healthy is false while a failure keeps the endpoint skipped.
	Healthy bool `json:"healthy"`
	// LastError is the failure that started the cooldown.
	LastError string `json:"last_error,omitempty"`
	// FailedUntil is the end of the cooldown.
	FailedUntil *time.Time `json:"failed_until,omitempty"`
	// LastSuccess is when the endpoint last answered.
	LastSuccess *time.Time `json:"last_success,omitempty"`
}

// RateLimitStats is a reported pull budget.
type RateLimitStats struct {
	// Limit and Remaining are the pulls per window and those left.
	Limit     int `json:"limit"`
	Remaining int `json:"remaining"`
	// WindowSeconds is the window's length; 0 when not reported.
	WindowSeconds int64 `json:"window_seconds"`
	// Seen is when the budget was reported.
	Seen time.Time `json:"seen"`
	// Held is true while manifest GETs are held back.
	Held bool `json:"held"`
}

// serveStats answers GET /registry_cache/stats.
func (a *AdminAPI) serveStats(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	resp := StatsResponse{Caches: []CacheStats{}}
	for _, h := range liveHandlers() {
		resp.Caches = append(resp.Caches, h.figures().cacheStats())
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

// cacheStats renders the figures as the admin API reports them.
func (f figures) cacheStats() CacheStats {
	st, ms := f.Cache, f.Mirror
	cs := CacheStats{
		Storage: f.Storage, Objects: st.Objects, UsedBytes: st.UsedBytes, BudgetBytes: st.BudgetBytes,
		ReservedBytes: st.ReservedBytes, Evictions: st.Evictions, EvictedBytes: st.EvictedBytes,
		NotStored: st.NotStored, Unwritable: st.Unwritable, Fills: st.Fills, FillReaders: st.FillReaders,
		IdleEvictions: st.IdleEvictions, MaxIdleSeconds: int64(st.MaxIdle / time.Second), PinnedObjects: st.PinnedObjects,
		Requests:       map[string]map[string]int64{},
		BytesFromCache: ms.BytesFromCache, BytesFromUpstream: ms.BytesFromUpstream, HitRatio: ms.HitRatio(),
		StaleServes: ms.StaleServes, RateLimitHolds: ms.RateLimitHolds, NegativeHits: ms.NegativeHits,
		Policy: f.Policy, Sync: f.Sync, Integrity: integrityStats(f.Integrity),

		FillResumes: st.FillResumes, FillRestarts: st.FillRestarts, FillSplits: st.FillSplits,
		PartialsContinued: st.PartialsContinued, SourceSwitches: st.SourceSwitches, Prefetches: st.Prefetches,
	}
	for _, rc := range ms.Requests {
		if cs.Requests[rc.Kind] == nil {
			cs.Requests[rc.Kind] = map[string]int64{}
		}
		cs.Requests[rc.Kind][rc.Result] = rc.Count
	}
	for _, u := range f.Upstreams {
		cs.Upstreams = append(cs.Upstreams, u.stats())
	}
	return cs
}

// stats renders one upstream's health and budget as the admin API
// reports them.
func (u upstreamFigures) stats() UpstreamStats {
	us := UpstreamStats{Name: u.Name}
	for _, eh := range u.Health {
		es := EndpointStats{URL: eh.URL, Healthy: eh.Healthy, LastError: eh.LastError}
		if !eh.FailedUntil.IsZero() {
			t := eh.FailedUntil
			es.FailedUntil = &t
		}
		if !eh.LastSuccess.IsZero() {
			t := eh.LastSuccess
			es.LastSuccess = &t
		}
		us.Endpoints = append(us.Endpoints, es)
	}
	if rl := u.RateLimit; u.HasRateLimit {
		us.RateLimit = &RateLimitStats{Limit: rl.Limit, Remaining: rl.Remaining,
			WindowSeconds: int64(rl.Window / time.Second), Seen: rl.Seen, Held: u.Held}
	}
	return us
}

// RepositoriesResponse is the body of GET /registry_cache/repositories.
type RepositoriesResponse struct {
	// Caches has one entry per cache directory of the running config.
	Caches []CacheRepositories `json:"caches"`
}

// CacheRepositories lists what one cache holds.
type CacheRepositories struct {
	// Storage is the cache directory.
	Storage string `json:"storage"`
	// Repositories are the repositories with cached tags, sorted.
	Repositories []mirror.RepositoryInfo `json:"repositories"`
}

// serveRepositories answers GET /registry_cache/repositories.
func (a *AdminAPI) serveRepositories(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	resp := RepositoriesResponse{Caches: []CacheRepositories{}}
	for _, h := range liveHandlers() {
		repos, err := h.mirror.Repositories()
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("listing %s: %w", h.dir, err)}
		}
		resp.Caches = append(resp.Caches, CacheRepositories{Storage: h.dir, Repositories: repos})
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

// PurgeRequest is the body of POST /registry_cache/purge: one of Image
// (docker.io/library/alpine:3.19, alpine@sha256:…) and Repository
// (ghcr.io/owner/app).
type PurgeRequest struct {
	// Image is an image by tag or digest; a name without either means its
	// latest tag.
	Image string `json:"image,omitempty"`
	// Repository is a whole repository.
	Repository string `json:"repository,omitempty"`
	// Storage limits the purge to the cache in this directory. Default:
	// every cache of the running config.
	Storage string `json:"storage,omitempty"`
}

// PurgeResponse is the answer to a purge, per cache.
type PurgeResponse struct {
	// Caches has one entry per cache purged.
	Caches []CachePurge `json:"caches"`
}

// CachePurge is what a purge removed from one cache.
type CachePurge struct {
	// Storage is the cache directory.
	Storage string `json:"storage"`
	mirror.PurgeResult
}

// decodePost checks that r is a POST and decodes its JSON body (at most
// 64 KiB) into v, answering 405 or 400 as an admin API error; with
// emptyOK, an empty body leaves v as it is.
func decodePost(r *http.Request, v any, emptyOK bool) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(v)
	if err != nil && !(emptyOK && errors.Is(err, io.EOF)) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("reading the request: %w", err)}
	}
	return nil
}

// servePurge answers POST /registry_cache/purge.
func (a *AdminAPI) servePurge(w http.ResponseWriter, r *http.Request) error {
	var req PurgeRequest
	if err := decodePost(r, &req, false); err != nil {
		return err
	}
	if (req.Image == "") == (req.Repository == "") {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`give one of "image" and "repository"`)}
	}
	resp := PurgeResponse{Caches: []CachePurge{}}
	for _, h := range liveHandlers() {
		if req.Storage != "" && req.Storage != h.dir {
			continue
		}
		ref, err := mirror.ParseImageRef(req.Image+req.Repository, h.mirror.DefaultUpstream(), req.Repository != "")
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
		}
		if !h.mirror.Mirrors(ref.Registry) {
			continue // another cache of the config may mirror it
		}
		res, err := h.mirror.Purge(ref)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("purging %s from %s: %w", ref, h.dir, err)}
		}
		h.logger.Info("purged from the cache", zap.String("image", ref.String()), zap.Int("tags", res.Tags),
			zap.Int("objects", res.Objects), zap.Int64("bytes", res.Bytes))
		resp.Caches = append(resp.Caches, CachePurge{Storage: h.dir, PurgeResult: res})
	}
	if len(resp.Caches) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("no cache of this config mirrors the registry of %q", req.Image+req.Repository)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

// WarmRequest is the body of POST /registry_cache/warm.
type WarmRequest struct {
	// Images are the images to fetch into the cache, by tag or digest
	// (docker.io/library/alpine:3.19, ghcr.io/owner/app@sha256:…).
	Images []string `json:"images"`
	// Platforms limits multi-platform images to these ("linux/amd64",
	// "linux/arm/v7"). Default: all.
	Platforms []string `json:"platforms,omitempty"`
	// Storage names the cache to warm when the config has several.
	Storage string `json:"storage,omitempty"`
}

// maxWarmImages bounds the images of one warm request.
const maxWarmImages = 1000

// serveWarm answers POST /registry_cache/warm: it fetches the images one
// after the other and streams their progress as JSON lines
// (mirror.WarmProgress), each image ending with a line that has "done" or
// "error". The status is 200 once the request is accepted; failures of
// single images are in their lines.
func (a *AdminAPI) serveWarm(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	var req WarmRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("reading the request: %w", err)}
	}
	if len(req.Images) == 0 || len(req.Images) > maxWarmImages {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("give between 1 and %d images", maxWarmImages)}
	}
	target, err := oneHandler(req.Storage)
	if err != nil {
		return err
	}
	target.applyBudget()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	failed := 0
	for _, image := range req.Images {
		err := target.mirror.Warm(r.Context(), image, req.Platforms, func(p mirror.WarmProgress) {
			_ = enc.Encode(p)
			_ = rc.Flush()
		})
		if err != nil {
			failed++
		}
		if r.Context().Err() != nil {
			break
		}
	}
	target.logger.Info("warmed the cache", zap.Int("images", len(req.Images)), zap.Int("failed", failed))
	return nil
}

// oneHandler returns the handler of the cache in storage, or the only
// one when storage is empty.
func oneHandler(storage string) (*Handler, error) {
	var target *Handler
	for _, h := range liveHandlers() {
		if storage == "" || storage == h.dir {
			if target != nil {
				return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`several caches are configured: name one with "storage"`)}
			}
			target = h
		}
	}
	if target == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such registry cache")}
	}
	return target, nil
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
