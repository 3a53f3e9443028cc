package caddymodule

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dustin/go-humanize"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
)

// statusPage is the HTML of GET /registry_cache/: one section per cache,
// with no external assets (the chart is inline SVG).
var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":   func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) },
	"percent": func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"deref":   func(t *time.Time) time.Time { return *t },
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return humanize.Time(t)
	},
	"short": func(d digest.Digest) string {
		if enc := d.Encoded(); len(enc) > 12 {
			return string(d.Algorithm()) + ":" + enc[:12]
		}
		return d.String()
	},
	"seconds": func(n int64) string { return durationText(time.Duration(n) * time.Second) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>regcache status</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; min-width: 10em; }
.figure b { display: block; font-size: 1.6em; }
.bar { background: #eee; border-radius: 4px; height: .8em; width: 100%; }
.bar span { display: block; background: #2a7; height: 100%; border-radius: 4px; }
.bar.full span { background: #c33; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid #eee; }
.bad { color: #c33; } .ok { color: #2a7; }
svg { background: #fafafa; border: 1px solid #eee; }
</style>
</head>
<body>
<h1>regcache <small id="version">{{.Version}}</small></h1>
{{if not .Caches}}<p>No registry cache is configured.</p>{{end}}
{{range .Caches}}
<section class="cache">
<h2>Cache <code>{{.Storage}}</code></h2>
<div class="figures">
  <div class="figure" id="hit-ratio">hit ratio<b>{{percent .HitRatio}}</b></div>
  <div class="figure" id="bytes-saved">served from cache<b>{{bytes .BytesFromCache}}</b></div>
  <div class="figure">fetched upstream<b>{{bytes .BytesFromUpstream}}</b></div>
  <div class="figure" id="disk">disk<b>{{bytes .UsedBytes}} / {{bytes .BudgetBytes}}</b>
    <div class="bar{{if .Full}} full{{end}}"><span style="width: {{.DiskPercent}}%"></span></div></div>
  <div class="figure">objects<b>{{.Objects}}</b></div>
  <div class="figure">downloads<b>{{.Fills}}</b>{{.FillReaders}} clients waiting</div>
</div>
{{if .Unwritable}}<p class="bad"><b>The disk is full or unwritable:</b> content is streamed without being stored.</p>{{end}}
<p id="integrity">Content at rest: {{with .Integrity}}{{if .CorruptObjects}}<span class="bad"><b>{{.CorruptObjects}} corrupt objects</b> ({{bytes .CorruptBytes}}) found and removed</span>{{else}}<span class="ok">no corrupt object found</span>{{end}}; {{if .Scrub.Enabled}}scrub {{if .Scrub.Running}}running{{else}}idle{{end}}, last pass finished {{if .Scrub.LastPassFinished}}{{ago (deref .Scrub.LastPassFinished)}}{{else}}never{{end}}, {{bytes .Scrub.CheckedBytes}} checked since start{{else}}scrub off{{end}}{{end}}.</p>
<p>Degraded answers: {{.StaleServes}} stale tags, {{.RateLimitHolds}} held by a pull budget, {{.NegativeHits}} remembered 404s, {{.NotStored}} not stored, {{.Evictions}} evictions.</p>
<h3>Over time</h3>
<svg viewBox="0 0 600 160" width="600" height="160" role="img" aria-label="hit ratio and bytes served from cache over time">
  <polyline fill="none" stroke="#2a7" stroke-width="2" points="{{.RatioPoints}}"/>
  <polyline fill="none" stroke="#37c" stroke-width="2" points="{{.SavedPoints}}"/>
  <text x="6" y="14" font-size="11" fill="#2a7">hit ratio per minute (0–100%)</text>
  <text x="6" y="28" font-size="11" fill="#37c">bytes served from cache, cumulative (max {{bytes .BytesFromCache}})</text>
  <text x="6" y="154" font-size="10" fill="#888">{{.Since}}</text><text x="594" y="154" font-size="10" fill="#888" text-anchor="end">now</text>
</svg>
<h3>Upstreams</h3>
<table class="upstreams">
<tr><th>registry</th><th>endpoint</th><th>health</th><th>pull budget</th></tr>
{{range .Upstreams}}{{$u := .}}{{range $i, $e := .Endpoints}}
<tr><td>{{if eq $i 0}}{{$u.Name}}{{end}}</td><td>{{$e.URL}}</td>
<td>{{if $e.Healthy}}<span class="ok">healthy</span>{{else}}<span class="bad">failing: {{$e.LastError}}</span>{{end}}</td>
<td>{{if and (eq $i 0) $u.RateLimit}}{{$u.RateLimit.Remaining}} of {{$u.RateLimit.Limit}}{{if $u.RateLimit.Held}} (held){{end}}{{end}}</td></tr>
{{end}}{{end}}
</table>
{{if .Policy}}<h3>Policy</h3>
<table class="policy">
<tr><th>rule</th><th>pattern</th><th>mode</th><th>refused</th><th>served in audit</th></tr>
{{range .Policy}}<tr><td>{{.ID}}</td><td><code>{{.Text}}</code></td><td>{{.Mode}}</td><td>{{.Refused}}</td><td>{{.Audited}}</td></tr>
{{end}}</table>{{end}}
{{if .Sync}}<h3>Sync rules</h3>
<table class="sync">
<tr><th>rule</th><th>last run</th><th>result</th><th>next run</th><th>images</th><th>fetched (last / all)</th><th>pinned</th></tr>
{{range .Sync}}<tr><td>{{.Rule}}</td><td>{{ago .LastRun}}</td>
<td>{{if .Running}}running{{else if eq .Result "ok"}}<span class="ok">ok</span>{{else if .Result}}<span class="bad">{{.Result}}</span>{{else}}not yet{{end}}{{if .Message}}: {{.Message}}{{end}}</td>
<td>{{ago .NextRun}}</td><td>{{.Images}} ({{.Updated}} updated)</td><td>{{bytes .LastBytes}} / {{bytes .TotalBytes}}</td><td>{{.Pinned}}</td></tr>
{{end}}</table>{{end}}
<h3>Top repositories</h3>
<table class="repositories">
<tr><th>repository</th><th>tags</th><th>cached</th><th>last used</th></tr>
{{range .Top}}<tr><td>{{.Upstream}}/{{.Repository}}</td><td>{{len .Tags}}</td><td>{{bytes .Bytes}}</td><td>{{ago .LastUsed}}</td></tr>
{{else}}<tr><td colspan="4">nothing cached yet</td></tr>{{end}}
</table>
<h3>Oldest entries</h3>
<p>{{if .MaxIdleSeconds}}Content unread for {{seconds .MaxIdleSeconds}} is evicted (max_idle): {{.IdleEvictions}} objects so far.{{else}}No max_idle: content is evicted only to stay within max_size.{{end}}
{{.PinnedObjects}} objects are pinned by sync rules.</p>
<table class="oldest">
<tr><th>object</th><th>kind</th><th>size</th><th>last used</th><th>pinned</th></tr>
{{range .Oldest}}<tr><td><code>{{short .Digest}}</code></td><td>{{if .Manifest}}manifest{{else}}blob{{end}}</td><td>{{bytes .Size}}</td><td>{{ago .LastAccess}}</td><td>{{if .Pinned}}yes{{end}}</td></tr>
{{else}}<tr><td colspan="5">nothing cached yet</td></tr>{{end}}
</table>
</section>
{{end}}
</body>
</html>
`))

// durationText writes a duration as the Caddyfile would: 30d for whole
// days, else as time.Duration does.
func durationText(d time.Duration) string {
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

// statusView is one cache on the status page.
type statusView struct {
	CacheStats
	DiskPercent              float64
	Full                     bool
	RatioPoints, SavedPoints string
	Since                    string
	Top                      []mirror.RepositoryInfo
	Oldest                   []cache.Entry
}

// maxOldestEntries is the number of oldest entries on the status page.
const maxOldestEntries = 10

// maxTopRepositories is the number of repositories on the status page.
const maxTopRepositories = 10

// serveStatusPage answers GET /registry_cache/ with the HTML status page.
func (a *AdminAPI) serveStatusPage(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Path != "/registry_cache/" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no such page: %s", r.URL.Path)}
	}
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	var views []statusView
	for _, h := range liveHandlers() {
		f := h.figures()
		v := statusView{CacheStats: f.cacheStats()}
		if v.BudgetBytes > 0 {
			v.DiskPercent = min(100, 100*float64(v.UsedBytes)/float64(v.BudgetBytes))
			v.Full = v.DiskPercent >= 95
		}
		samples := h.history.all(f.sample())
		v.RatioPoints, v.SavedPoints = chartPoints(samples)
		v.Since = humanize.Time(samples[0].At)
		repos, err := h.mirror.Repositories()
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		slices.SortFunc(repos, func(a, b mirror.RepositoryInfo) int {
			switch {
			case a.Bytes > b.Bytes:
				return -1
			case a.Bytes < b.Bytes:
				return 1
			}
			return strings.Compare(a.Repository, b.Repository)
		})
		v.Top = repos[:min(len(repos), maxTopRepositories)]
		if v.Oldest, err = h.store.Oldest(maxOldestEntries); err != nil {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
		}
		views = append(views, v)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	return statusPage.Execute(w, struct {
		Version string
		Caches  []statusView
	}{Version(), views})
}

// chartPoints turns samples into the two polylines of the chart (600×160,
// plot area y 36..140): the hit ratio of each interval, and the bytes
// served from the cache, cumulative.
func chartPoints(samples []sample) (ratio, saved string) {
	const left, width, top, height = 0.0, 600.0, 36.0, 104.0
	n := len(samples)
	if n < 2 {
		return "", ""
	}
	maxSaved := max(samples[n-1].BytesFromCache, 1)
	var rb, sb strings.Builder
	point := func(x float64, prev, cur sample) {
		hits, misses := cur.Hits-prev.Hits, cur.Misses-prev.Misses
		r := 0.0
		if hits+misses > 0 {
			r = float64(hits) / float64(hits+misses)
		}
		fmt.Fprintf(&rb, "%.1f,%.1f ", x, top+height*(1-r))
		fmt.Fprintf(&sb, "%.1f,%.1f ", x, top+height*(1-float64(cur.BytesFromCache)/float64(maxSaved)))
	}
	if n == 2 {
		// One interval so far: a level line across the chart.
		point(left, samples[0], samples[1])
		point(left+width, samples[0], samples[1])
	}
	for i := 1; n > 2 && i < n; i++ {
		point(left+width*float64(i-1)/float64(n-2), samples[i-1], samples[i])
	}
	return strings.TrimSpace(rb.String()), strings.TrimSpace(sb.String())
}
