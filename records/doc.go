// Package records owns the small records regcache keeps next to the
// content: what each tag pointed at when it was last fetched (tag
// records), which repositories the upstream served each object under
// (links), and which repositories the mirror's default identity may pull
// (grants). They live in the content store's meta.db (buckets "tags",
// "links" and "grants"), which the package shares with package cache
// through Store.WithMeta, so that a cache keeps its records across
// versions.
//
// Links are keyed by digest first, and the content store tells the
// records when an object goes (they are its cache.Dependent, attached as
// it opens, before anything can be removed): the object's links go in the
// same transaction, so a link never outlives its object and a later copy
// of the content is served to a repository only on the upstream's word
// again; a pass of idle eviction drops the tag records whose manifest is
// gone.
//
// The package stores records; it does not decide who may pull what.
package records
