// Package oci holds the registry protocol vocabulary shared by the rest of
// regcache: request path parsing, name, tag and digest validation by the OCI
// distribution spec's grammar, manifest media types, the OCI error codes and
// the one writer of the OCI error JSON body.
//
// It imports nothing else from regcache and nothing from Caddy.
package oci
