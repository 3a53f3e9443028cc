// Package cache owns regcache's storage: a content-addressed disk store
// laid out like containerd's (blobs/<alg>/<hex> for verified content,
// ingest/ for downloads in progress), crash-safe metadata in bbolt (media
// types, sizes, last access), a ristretto hot index in memory in front of
// the disk, the budget and its eviction, and the single fill per digest
// that every waiting reader streams from as bytes arrive. The records kept
// next to the content (tags, links, grants: package records) share its
// meta.db through WithMeta and hear of removed objects (Dependent).
//
// Disk is the truth: an object exists when its file exists under blobs/,
// and a file gets there only by a rename after its digest verified. The
// hot index only accelerates; a miss there falls through to the disk.
//
// Content stays true at rest: whole reads of small objects are hashed
// whenever they come from disk, readers report what a blob's first whole
// read hashed to (CheckRead), a paced background scrub hashes every object
// (scrub.go), and Verify does it on demand. A corrupt object is removed,
// logged at Error and counted; readers that still have its file open can
// tell (Condemned).
package cache
