// Package cache owns regcache's storage: a content-addressed disk store
// laid out like containerd's (blobs/<alg>/<hex> for verified content,
// ingest/ for downloads in progress), crash-safe metadata in bbolt (media
// types, sizes, last access, tag records), a ristretto hot index in memory
// in front of the disk, and the single fill per digest that every waiting
// reader streams from as bytes arrive.
//
// Disk is the truth: an object exists when its file exists under blobs/,
// and a file gets there only by a rename after its digest verified. The
// hot index only accelerates; a miss there falls through to the disk.
package cache
