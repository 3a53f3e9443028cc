package hubtest

import (
	"fmt"
	"sync/atomic"
)

// Counters count what the upstream served. Every field is safe for
// concurrent use.
type Counters struct {
	// Front requests answered after authorisation, by kind and method.
	ManifestGET, ManifestHEAD, BlobGET, BlobHEAD, TagsList, Referrers, Base, Other atomic.Int64
	// FrontAll counts every request the front received, 401s included.
	FrontAll atomic.Int64
	// Unauthorized counts the front's 401 answers.
	Unauthorized atomic.Int64
	// TooMany counts 429 answers.
	TooMany atomic.Int64
	// Tokens counts token requests answered with a token.
	Tokens atomic.Int64
	// TokenDenied counts token requests refused (bad credentials).
	TokenDenied atomic.Int64
	// CDNAll counts every request the CDN received.
	CDNAll atomic.Int64
	// CDNGET counts blob requests the CDN served.
	CDNGET atomic.Int64
	// CDNBytes counts the bytes of blob bodies the CDN wrote.
	CDNBytes atomic.Int64
	// CDNAuthRejected counts CDN requests refused for carrying an
	// Authorization header.
	CDNAuthRejected atomic.Int64
}

// Reset sets every counter to zero.
func (c *Counters) Reset() {
	for _, v := range c.all() {
		v.p.Store(0)
	}
}

// Upstream counts every request that reached the upstream: front, token
// realm and CDN.
func (c *Counters) Upstream() int64 {
	return c.FrontAll.Load() + c.Tokens.Load() + c.TokenDenied.Load() + c.CDNAll.Load()
}

type namedCounter struct {
	name string
	p    *atomic.Int64
}

func (c *Counters) all() []namedCounter {
	return []namedCounter{
		{"manifest_get", &c.ManifestGET}, {"manifest_head", &c.ManifestHEAD}, {"blob_get", &c.BlobGET},
		{"blob_head", &c.BlobHEAD}, {"tags_list", &c.TagsList}, {"referrers", &c.Referrers}, {"base", &c.Base},
		{"other", &c.Other}, {"front_all", &c.FrontAll}, {"unauthorized", &c.Unauthorized}, {"too_many", &c.TooMany},
		{"tokens", &c.Tokens}, {"token_denied", &c.TokenDenied}, {"cdn_all", &c.CDNAll}, {"cdn_get", &c.CDNGET},
		{"cdn_bytes", &c.CDNBytes}, {"cdn_auth_rejected", &c.CDNAuthRejected},
	}
}

// String lists the non-zero counters.
func (c *Counters) String() string {
	s := ""
	for _, v := range c.all() {
		if n := v.p.Load(); n != 0 {
			s += fmt.Sprintf("%s=%d ", v.name, n)
		}
	}
	if s == "" {
		return "(all zero)"
	}
	return s[:len(s)-1]
}
