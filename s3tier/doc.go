// Package s3tier owns the bucket that several regcache nodes share: the
// shared tier of a cache on an S3-compatible object store (MinIO, Ceph
// RGW, the Versity S3 Gateway, AWS S3).
//
// The tier wraps what it shares instead of the cache branching on it:
// Content wraps the content store (a local miss of a manifest reads the
// bucket, new content is written through, tasks run once among the
// nodes), Records wraps the records (tags, links, grants), and the Tier
// itself is the source of the content store's fills
// (cache.Options.Sources): the shared copy, another node's download as it
// lands, or the upstream's body published as it arrives (stream.go).
//
// Layout under the configured prefix:
//
//	blobs/<alg>/<hex>                 verified content (blobs and manifests),
//	                                  Content-Type = media type
//	tags/<upstream>/<repo>/_tags/<t>  tag records (JSON, with fetch time)
//	fills/<alg>/<hex>/lease           the lease of the one fill of a digest
//	fills/<alg>/<hex>/<lease>/<n>     chunk n of that fill, as it lands
//	once/<sha256 of a task name>      the lease of a task one node runs for
//	                                  all (fetching a manifest)
//	records/links/..., records/grants/...
//	                                  access records (which repositories
//	                                  the upstream served an object under;
//	                                  the default identity's grants)
//
// An object appears under blobs/ only after the node that fetched it
// verified its digest. The lease is taken with a conditional write
// (If-None-Match: *), renewed and taken over with If-Match on its ETag,
// and expires when its holder stops renewing it, so a node that dies
// mid-fill leaves no one waiting for long.
package s3tier
