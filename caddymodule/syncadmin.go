package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/schedule"
)

// SyncRequest is the body of POST /registry_cache/sync.
type SyncRequest struct {
	// Rule is the sync rule to run, by its image as configured. Default:
	// every rule, one after the other.
	Rule string `json:"rule,omitempty"`
	// Storage names the cache when the config has several.
	Storage string `json:"storage,omitempty"`
}

// serveSync answers POST /registry_cache/sync: it runs the rule (or every
// rule) now and streams its progress as JSON lines (schedule.Progress):
// each image's, as warm reports them, and a line with "finished" (the
// rule's status) at the end of each rule. The status is 200 once the
// request is accepted; the outcome is in the "finished" lines.
func (a *AdminAPI) serveSync(w http.ResponseWriter, r *http.Request) error {
	var req SyncRequest
	if err := decodePost(r, &req, true); err != nil {
		return err
	}
	target, err := oneHandler(req.Storage)
	if err != nil {
		return err
	}
	if target.scheduler == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("this cache has no sync rules")}
	}
	rules := target.scheduler.Rules()
	if req.Rule != "" {
		name, ok := matchRule(rules, req.Rule, target.mirror.DefaultUpstream())
		if !ok {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("%w: %q (the rules are %q)", schedule.ErrUnknownRule, req.Rule, rules)}
		}
		rules = []string{name}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	for _, name := range rules {
		// The scheduler logs the outcome.
		if _, err := target.scheduler.Run(r.Context(), name, func(p schedule.Progress) {
			_ = enc.Encode(p)
			_ = rc.Flush()
		}); err != nil {
			return err // the rules were checked above
		}
		if r.Context().Err() != nil {
			break
		}
	}
	return nil
}

// matchRule returns the rule that want names: a rule of that name as
// configured, else the one that names the same image or repository once
// both are written in full (alpine and docker.io/library/alpine).
func matchRule(rules []string, want, defaultUpstream string) (string, bool) {
	full := func(s string) string {
		ref, err := mirror.ParseImageRef(s, defaultUpstream, true)
		if err != nil {
			return s
		}
		return ref.String()
	}
	for _, name := range rules {
		if name == want {
			return name, true
		}
	}
	for _, name := range rules {
		if full(name) == full(want) {
			return name, true
		}
	}
	return "", false
}
