// Package hubtest runs, on loopback, an upstream registry that behaves
// like Docker Hub, for regcache's integration tests and benchmarks.
//
// A Hub embeds the real distribution registry (filesystem storage in a
// temporary directory, no auth, reachable at RegistryURL for seeding) and
// puts three listeners in front of it:
//
//   - the front (URL), like registry-1.docker.io: every request needs a
//     bearer token with the repository's pull scope, else 401 with a
//     Bearer challenge; manifests carry rate-limit headers and may spend a
//     pull budget (429 TOOMANYREQUESTS); blob GETs answer 307 with a
//     signed CDN URL; everything else is proxied to the registry;
//   - the token realm (RealmURL), like auth.docker.io: anonymous or Basic
//     auth, opaque short-lived tokens, private repositories left out of
//     the token of users who may not pull them;
//   - the CDN (CDNURL): checks the URL signature, refuses any request that
//     carries an Authorization header, and streams the blob.
//
// Counters record what each listener served, and per blob digest the
// requests and bytes that crossed the link (Counters.Blob). SetFault and
// AddFault inject outages, errors, latency, throttling per answer or per
// TCP connection, truncation, corruption, transfers cut after N bytes,
// origins that ignore Range or answer another range than asked, and
// signed URLs that expire mid-transfer. The CDN and, with
// Options.DirectBlobs, the front answer Range requests for blobs. The
// Push helpers seed the registry with random or large images.
package hubtest
