package hubtest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Counters count what the hub served. Every field is safe for concurrent
// use. Requests of the front are counted by kind only once they are
// authorised; 401 answers are counted in Unauthorized instead.
type Counters struct {
	// ManifestGET counts authorised manifest GETs, 429s included.
	ManifestGET atomic.Int64
	// ManifestHEAD counts authorised manifest HEADs.
	ManifestHEAD atomic.Int64
	// BlobGET counts authorised blob GETs (answered with a redirect).
	BlobGET atomic.Int64
	// BlobHEAD counts authorised blob HEADs.
	BlobHEAD atomic.Int64
	// TagsList counts authorised tag list requests.
	TagsList atomic.Int64
	// Referrers counts authorised referrers requests.
	Referrers atomic.Int64
	// Catalog counts authorised catalog requests.
	Catalog atomic.Int64
	// Base counts authorised GET /v2/ requests.
	Base atomic.Int64
	// FrontAll counts every request the front received.
	FrontAll atomic.Int64
	// Unauthorized counts the front's 401 answers.
	Unauthorized atomic.Int64
	// TooMany counts 429 answers: a spent pull budget or Fault429.
	TooMany atomic.Int64
	// Faults counts requests an injected fault was applied to.
	Faults atomic.Int64
	// RealmAll counts every request the token realm received.
	RealmAll atomic.Int64
	// Tokens counts token requests answered with a token.
	Tokens atomic.Int64
	// TokenDenied counts token requests refused for bad credentials.
	TokenDenied atomic.Int64
	// CDNAll counts every request the CDN received.
	CDNAll atomic.Int64
	// CDNGET counts blob GETs the CDN accepted (a valid signature and no
	// Authorization header).
	CDNGET atomic.Int64
	// CDNBytes counts the blob body bytes the CDN wrote.
	CDNBytes atomic.Int64
	// CDNAuthRejected counts CDN requests refused for carrying an
	// Authorization header.
	CDNAuthRejected atomic.Int64
	// CDNExpired counts CDN requests refused because their signed URL had
	// expired, and transfers stopped when it expired.
	CDNExpired atomic.Int64
	// blobsMu guards blobs.
	blobsMu sync.Mutex
	// blobs holds the traffic of each blob digest.
	blobs map[string]*blobCounters
	// CDNBodyStart is when the CDN first began sending a blob body since
	// the last Reset, in Unix nanoseconds: the upstream's first byte, for
	// timing the clients of a cache against it (a fill in several ranges
	// makes several GETs). Reset sets it to zero; String leaves it out.
	CDNBodyStart atomic.Int64
}

// namedCounter is a counter and its name in String.
type namedCounter struct {
	name string
	n    *atomic.Int64
}

// all lists the counters in a fixed order.
func (c *Counters) all() []namedCounter {
	return []namedCounter{
		{"manifest_get", &c.ManifestGET}, {"manifest_head", &c.ManifestHEAD},
		{"blob_get", &c.BlobGET}, {"blob_head", &c.BlobHEAD},
		{"tags_list", &c.TagsList}, {"referrers", &c.Referrers},
		{"catalog", &c.Catalog}, {"base", &c.Base},
		{"front_all", &c.FrontAll}, {"unauthorized", &c.Unauthorized},
		{"too_many", &c.TooMany}, {"faults", &c.Faults},
		{"realm_all", &c.RealmAll}, {"tokens", &c.Tokens}, {"token_denied", &c.TokenDenied},
		{"cdn_all", &c.CDNAll}, {"cdn_get", &c.CDNGET}, {"cdn_bytes", &c.CDNBytes},
		{"cdn_auth_rejected", &c.CDNAuthRejected}, {"cdn_expired", &c.CDNExpired},
	}
}

// Reset sets every counter to zero.
func (c *Counters) Reset() {
	for _, v := range c.all() {
		v.n.Store(0)
	}
	c.CDNBodyStart.Store(0)
	c.blobsMu.Lock()
	c.blobs = nil
	c.blobsMu.Unlock()
}

// Upstream returns the number of requests the hub received on the front,
// the token realm and the CDN, whatever their answer: zero after a pull
// proves the pull was served without the upstream.
func (c *Counters) Upstream() int64 {
	return c.FrontAll.Load() + c.RealmAll.Load() + c.CDNAll.Load()
}

// String lists the non-zero counters as name=value pairs.
func (c *Counters) String() string {
	var parts []string
	for _, v := range c.all() {
		if n := v.n.Load(); n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", v.name, n))
		}
	}
	if len(parts) == 0 {
		return "(all zero)"
	}
	return strings.Join(parts, " ")
}

// BlobTraffic is what crossed the link for one blob digest, on the front
// and the CDN together.
type BlobTraffic struct {
	// Requests counts the GETs that asked for the blob's body: the
	// front's blob GETs (redirects included) and the CDN's GETs.
	Requests int64
	// Ranges counts the GETs among them that carried a Range header.
	Ranges int64
	// Redirects counts the front's blob GETs answered with a signed CDN
	// URL.
	Redirects int64
	// Bytes counts the body bytes of the blob sent to clients.
	Bytes int64
	// Peak is the largest number of the blob's body GETs (redirects
	// excepted) that were under way at once: above 1, the blob moved
	// over several connections in parallel.
	Peak int64
}

// blobCounters are the live counters behind a BlobTraffic.
type blobCounters struct {
	requests, ranges, redirects, bytes atomic.Int64
	active, peak                       atomic.Int64
	// mu guards cdnRanges.
	mu sync.Mutex
	// cdnRanges are the Range headers of the CDN's GETs, in order.
	cdnRanges []string
}

// blob returns the counters of digest, creating them on first use.
func (c *Counters) blob(digest string) *blobCounters {
	c.blobsMu.Lock()
	defer c.blobsMu.Unlock()
	if c.blobs == nil {
		c.blobs = map[string]*blobCounters{}
	}
	b := c.blobs[digest]
	if b == nil {
		b = &blobCounters{}
		c.blobs[digest] = b
	}
	return b
}

// countBlobGET counts a GET for the body of digest (with a Range header or
// not) and returns the counters of the blob.
func (c *Counters) countBlobGET(digest string, r *http.Request) *blobCounters {
	b := c.blob(digest)
	b.requests.Add(1)
	if r.Header.Get("Range") != "" {
		b.ranges.Add(1)
	}
	return b
}

// start counts a transfer of the blob's body under way until done is
// called.
func (b *blobCounters) start() (done func()) {
	n := b.active.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return func() { b.active.Add(-1) }
}

// noteCDNRange records the Range header of a CDN GET of the blob ("" for
// none).
func (b *blobCounters) noteCDNRange(r *http.Request) {
	b.mu.Lock()
	b.cdnRanges = append(b.cdnRanges, r.Header.Get("Range"))
	b.mu.Unlock()
}

// CDNRanges returns the Range headers of the CDN's GETs of one blob digest
// since the last Reset, in the order they came ("" for a GET without one):
// what a client asked the link for.
func (c *Counters) CDNRanges(digest string) []string {
	b := c.blob(digest)
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.cdnRanges)
}

// Blob returns the traffic of one blob digest since the last Reset: how
// many requests asked for it and how many of its bytes crossed the link.
func (c *Counters) Blob(digest string) BlobTraffic {
	b := c.blob(digest)
	return BlobTraffic{
		Requests: b.requests.Load(), Ranges: b.ranges.Load(),
		Redirects: b.redirects.Load(), Bytes: b.bytes.Load(), Peak: b.peak.Load(),
	}
}

// String formats the traffic for test messages.
func (t BlobTraffic) String() string {
	return fmt.Sprintf("%d requests (%d ranges, %d redirects, at most %d at once), %d bytes", t.Requests, t.Ranges, t.Redirects, t.Peak, t.Bytes)
}

// countingWriter adds the body bytes written through it to counters.
type countingWriter struct {
	http.ResponseWriter
	ns []*atomic.Int64
}

// Write writes p and counts what was written. It counts before writing,
// and takes back what could not be written, so that a client that has
// read the bytes never sees a counter that lags behind them.
func (cw *countingWriter) Write(p []byte) (int, error) {
	for _, n := range cw.ns {
		n.Add(int64(len(p)))
	}
	n, err := cw.ResponseWriter.Write(p)
	for _, c := range cw.ns {
		c.Add(int64(n - len(p)))
	}
	return n, err
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (cw *countingWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }
