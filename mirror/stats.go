package mirror

import (
	"io"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/regcache/regcache/oci"
)

// Stats are counters of what the mirror did since it was created, for
// metrics and the admin API.
type Stats struct {
	// StaleServes counts tag requests answered with the tag's last known
	// digest past its TTL, because the upstream could not revalidate it
	// (unreachable, timing out, answering 5xx or 429) or because the pull
	// budget held back the request that would have.
	StaleServes int64
	// RateLimitHolds counts manifest GETs not sent because the upstream's
	// pull budget was spent or down to its reserve.
	RateLimitHolds int64
	// NegativeHits counts manifest requests answered with a remembered
	// upstream 404 instead of asking the upstream again.
	NegativeHits int64
	// LoginThrottled counts credential checks refused with 429 because
	// the client, or all clients together, made too many (LoginLimits).
	LoginThrottled int64
	// Requests counts the answered requests by kind and result: hit (the
	// cache answered), miss (the content came from the upstream), stale (a
	// tag the upstream could not confirm, answered from the cache) and
	// error.
	Requests []RequestCount
	// BytesFromCache and BytesFromUpstream count the response bytes sent
	// from cached content and from content the upstream sent for the
	// request.
	BytesFromCache, BytesFromUpstream int64
}

// Pulls returns the manifest and blob requests answered from the cache
// (hits, and stale tags) and those whose content came from the upstream
// (misses); tag lists, referrers and errors are not counted.
func (s Stats) Pulls() (fromCache, fromUpstream int64) {
	for _, rc := range s.Requests {
		if rc.Kind != "manifest" && rc.Kind != "blob" {
			continue
		}
		switch rc.Result {
		case "hit", "stale":
			fromCache += rc.Count
		case "miss":
			fromUpstream += rc.Count
		}
	}
	return fromCache, fromUpstream
}

// HitRatio is the share of the manifest and blob requests answered from
// the cache (see Pulls); 0 before any.
func (s Stats) HitRatio() float64 {
	hits, misses := s.Pulls()
	if hits+misses == 0 {
		return 0
	}
	return float64(hits) / float64(hits+misses)
}

// statCounters are the live counters behind Stats.
type statCounters struct {
	staleServes    atomic.Int64
	rateLimitHolds atomic.Int64
	negativeHits   atomic.Int64
	loginThrottled atomic.Int64
	requests       requestCounters
}

// Stats returns the mirror's counters. It is safe for concurrent use.
func (m *Mirror) Stats() Stats {
	return Stats{
		StaleServes:    m.stats.staleServes.Load(),
		RateLimitHolds: m.stats.rateLimitHolds.Load(),
		NegativeHits:   m.stats.negativeHits.Load(),
		LoginThrottled: m.stats.loginThrottled.Load(),

		Requests:          m.stats.requests.counts(),
		BytesFromCache:    m.stats.requests.bytesFromCache.Load(),
		BytesFromUpstream: m.stats.requests.bytesFromUpstream.Load(),
	}
}

// source is where the content of an answer came from.
type source uint8

// The sources of an answer.
const (
	// sourceCache: the cache answered without asking the upstream for the
	// content (a revalidating HEAD may have been sent).
	sourceCache source = iota
	// sourceUpstream: the content came from the upstream for this request,
	// or from a fill or flight it joined.
	sourceUpstream
	// sourceStale: a tag the upstream could not confirm was answered from
	// the cache.
	sourceStale
)

// Request kinds and results counted by the mirror; the labels of its
// request metrics.
var (
	// RequestKinds are the kinds of requests counted.
	RequestKinds = []string{"manifest", "blob", "tags", "referrers"}
	// RequestResults are the results a request is counted under.
	RequestResults = []string{"hit", "miss", "stale", "error"}
)

// RequestCount is the number of requests of one kind and result.
type RequestCount struct {
	// Kind is one of RequestKinds.
	Kind string
	// Result is one of RequestResults.
	Result string
	// Count is the number of requests.
	Count int64
}

// requestCounters count requests by kind and result, and the bytes sent.
type requestCounters struct {
	byKindResult      [4][4]atomic.Int64
	bytesFromCache    atomic.Int64
	bytesFromUpstream atomic.Int64
}

// kindIndex maps a route kind to its row in requestCounters, or -1.
func kindIndex(k oci.Kind) int {
	switch k {
	case oci.KindManifest:
		return 0
	case oci.KindBlob:
		return 1
	case oci.KindTags:
		return 2
	case oci.KindReferrers:
		return 3
	}
	return -1
}

// count records one answered request.
func (c *requestCounters) count(k oci.Kind, src source, failed bool, bytes int64) {
	row := kindIndex(k)
	if row < 0 {
		return
	}
	c.byKindResult[row][slices.Index(RequestResults, resultName(src, failed))].Add(1)
	if failed {
		return
	}
	if src == sourceUpstream {
		c.bytesFromUpstream.Add(bytes)
	} else {
		c.bytesFromCache.Add(bytes)
	}
}

// resultName is the result a request is counted and logged under.
func resultName(src source, failed bool) string {
	switch {
	case failed:
		return "error"
	case src == sourceStale:
		return "stale"
	case src == sourceUpstream:
		return "miss"
	}
	return "hit"
}

// counts returns every kind and result with its count.
func (c *requestCounters) counts() []RequestCount {
	out := make([]RequestCount, 0, len(RequestKinds)*len(RequestResults))
	for i, kind := range RequestKinds {
		for j, result := range RequestResults {
			out = append(out, RequestCount{Kind: kind, Result: result, Count: c.byKindResult[i][j].Load()})
		}
	}
	return out
}

// countingWriter counts the bytes of a response body and carries where
// its content came from. It keeps the wrapped writer's ReadFrom, so a
// cached file still goes out with sendfile.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
	source source
}

func (cw *countingWriter) WriteHeader(status int) {
	if cw.status == 0 {
		cw.status = status
	}
	cw.ResponseWriter.WriteHeader(status)
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	n, err := cw.ResponseWriter.Write(p)
	cw.n += int64(n)
	return n, err
}

// ReadFrom hands src to the wrapped writer's ReadFrom when it has one.
func (cw *countingWriter) ReadFrom(src io.Reader) (int64, error) {
	if cw.status == 0 {
		cw.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := cw.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		// HTTP/2: no kernel copy; a pooled buffer rather than io.Copy's
		// 32 KiB per call, which a streamed fill makes at every step.
		bp := copyBuffers.Get().(*[]byte)
		n, err = io.CopyBuffer(cw.ResponseWriter, src, *bp)
		copyBuffers.Put(bp)
	}
	cw.n += n
	return n, err
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (cw *countingWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// markSource records on w, when it is the mirror's countingWriter, where
// the answer's content came from.
func markSource(w http.ResponseWriter, src source) {
	if cw, ok := w.(*countingWriter); ok {
		cw.source = src
	}
}
