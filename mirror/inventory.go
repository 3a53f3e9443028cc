package mirror

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

// ImageRef is an image as an operator names it: docker.io/library/alpine:3.19,
// alpine:3.19, ghcr.io/owner/app@sha256:…, or a whole repository.
type ImageRef struct {
	// Registry is the upstream's canonical name.
	Registry string
	// Repository is the repository at the upstream (library/ added for
	// Docker Hub).
	Repository string
	// Tag is the tag; empty when Digest is set or the whole repository is
	// meant.
	Tag string
	// Digest is the manifest digest; empty when not given.
	Digest digest.Digest
}

// String writes the reference in full: registry/repository[:tag|@digest].
func (r ImageRef) String() string {
	s := r.Registry + "/" + r.Repository
	switch {
	case r.Digest != "":
		s += "@" + r.Digest.String()
	case r.Tag != "":
		s += ":" + r.Tag
	}
	return s
}

// ParseImageRef reads an image reference. A first component with a dot
// or a port, or localhost, is the registry; otherwise defaultRegistry is.
// Docker Hub names of one component get library/. With repoOnly, a
// reference without tag or digest means the whole repository; otherwise
// it means the tag latest.
func ParseImageRef(s, defaultRegistry string, repoOnly bool) (ImageRef, error) {
	var ref ImageRef
	rest := strings.TrimSpace(s)
	if name, d, ok := strings.Cut(rest, "@"); ok {
		pd, err := oci.ParseDigest(d)
		if err != nil {
			return ref, fmt.Errorf("image %q: %w", s, err)
		}
		ref.Digest, rest = pd, name
	}
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		ref.Tag, rest = rest[i+1:], rest[:i]
		if err := oci.ValidateTag(ref.Tag); err != nil {
			return ref, fmt.Errorf("image %q: %w", s, err)
		}
	}
	ref.Registry = CanonicalRegistry(defaultRegistry)
	if first, after, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		ref.Registry, rest = CanonicalRegistry(first), after
	}
	if ref.Registry == DockerHub && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if err := oci.ValidateName(rest); err != nil {
		return ref, fmt.Errorf("image %q: %w", s, err)
	}
	ref.Repository = rest
	if ref.Tag == "" && ref.Digest == "" && !repoOnly {
		ref.Tag = "latest"
	}
	return ref, nil
}

// TagInfo is one cached tag.
type TagInfo struct {
	// Tag is the tag.
	Tag string `json:"tag"`
	// Digest is the manifest it pointed at when last confirmed.
	Digest string `json:"digest"`
	// FetchedAt is when the upstream last confirmed it.
	FetchedAt time.Time `json:"fetched_at"`
}

// RepositoryInfo describes what the cache holds of one repository.
type RepositoryInfo struct {
	// Upstream is the registry's canonical name.
	Upstream string `json:"upstream"`
	// Repository is the repository at the upstream.
	Repository string `json:"repository"`
	// Tags are its cached tags, sorted.
	Tags []TagInfo `json:"tags"`
	// Objects and Bytes count the cached manifests and blobs its tags
	// reach (shared blobs count in every repository that reaches them).
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// LastUsed is the last use of any of them; zero when unknown.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// maxIndexDepth bounds how deep Warm follows indexes: an index of
// images, and images' own references.
const maxIndexDepth = 3

// maxReachable bounds the objects one report or purge walks.
const maxReachable = 100_000

// Repositories reports what the cache holds, per repository of a
// configured upstream, sorted by upstream and repository. It reads the
// cache without counting as a use of anything.
func (m *Mirror) Repositories() ([]RepositoryInfo, error) {
	type key struct{ upstream, repo string }
	byRepo := map[key]*RepositoryInfo{}
	var order []key
	err := m.records.EachTag(func(upstream, repo, tag string, t cache.Tag) bool {
		if strings.HasPrefix(tag, ":") {
			return true // the mirror's own bookkeeping
		}
		k := key{upstream, repo}
		ri, ok := byRepo[k]
		if !ok {
			ri = &RepositoryInfo{Upstream: upstream, Repository: repo, Tags: []TagInfo{}}
			byRepo[k] = ri
			order = append(order, k)
		}
		ri.Tags = append(ri.Tags, TagInfo{Tag: tag, Digest: t.Digest.String(), FetchedAt: t.FetchedAt})
		return true
	})
	if err != nil {
		return nil, err
	}
	out := make([]RepositoryInfo, 0, len(order))
	for _, k := range order {
		ri := byRepo[k]
		var roots []digest.Digest
		for _, t := range ri.Tags {
			roots = append(roots, digest.Digest(t.Digest))
		}
		for d, size := range m.reachable(roots) {
			ri.Objects++
			ri.Bytes += size
			if at, ok := m.store.LastAccess(d); ok && at.After(ri.LastUsed) {
				ri.LastUsed = at
			}
		}
		out = append(out, *ri)
	}
	slices.SortFunc(out, func(a, b RepositoryInfo) int {
		return strings.Compare(a.Upstream+"\x00"+a.Repository, b.Upstream+"\x00"+b.Repository)
	})
	return out, nil
}

// reachable returns the cached objects the manifests roots reach (the
// manifests themselves, their child manifests, configs, layers and
// subjects, at any depth), with their sizes. What is not cached is left
// out. Every object is visited once, so cycles end.
func (m *Mirror) reachable(roots []digest.Digest) map[digest.Digest]int64 {
	found := map[digest.Digest]int64{}
	var walk func(d digest.Digest)
	walk = func(d digest.Digest) {
		if _, seen := found[d]; seen || d.Validate() != nil || len(found) >= maxReachable {
			return
		}
		data, obj, err := m.store.InspectContent(d, MaxManifestSize)
		if errors.Is(err, cache.ErrTooLarge) {
			if o, err := m.store.Inspect(d); err == nil {
				found[d] = o.Size
			}
			return
		}
		if err != nil {
			return
		}
		found[d] = obj.Size
		children, blobs, subject, err := oci.ManifestRefs(data)
		if err != nil {
			return // a blob, not a manifest
		}
		for _, c := range children {
			walk(digest.Digest(c.Digest))
		}
		for _, b := range blobs {
			bd := digest.Digest(b.Digest)
			if bd.Validate() != nil {
				continue
			}
			if _, seen := found[bd]; seen {
				continue
			}
			if o, err := m.store.Inspect(bd); err == nil {
				found[bd] = o.Size
			}
		}
		if subject != nil {
			walk(digest.Digest(subject.Digest))
		}
	}
	for _, d := range roots {
		walk(d)
	}
	return found
}

// PurgeResult is what a purge removed.
type PurgeResult struct {
	// Tags are the tag records removed.
	Tags int `json:"tags"`
	// Objects and Bytes are the manifests and blobs removed.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// Purge removes an image (by tag or digest) or a whole repository
// (ImageRef without tag and digest) from the cache: the tag records, and
// the manifests and blobs they reach that no other cached tag reaches.
// Removed content is fetched again on its next request.
func (m *Mirror) Purge(ref ImageRef) (PurgeResult, error) {
	var res PurgeResult
	if _, ok := m.upstreams[ref.Registry]; !ok {
		return res, oci.Errorf(http.StatusNotFound, oci.CodeNameUnknown, "registry %q is not mirrored here", ref.Registry)
	}
	var targets, kept []digest.Digest
	type tagRec struct{ upstream, repo, tag string }
	var drop []tagRec
	err := m.records.EachTag(func(upstream, repo, tag string, t cache.Tag) bool {
		if strings.HasPrefix(tag, ":") {
			return true
		}
		match := upstream == ref.Registry && repo == ref.Repository &&
			(ref.Tag == "" && ref.Digest == "" || tag == ref.Tag || t.Digest == ref.Digest)
		if match {
			drop = append(drop, tagRec{upstream, repo, tag})
			targets = append(targets, t.Digest)
		} else {
			kept = append(kept, t.Digest)
		}
		return true
	})
	if err != nil {
		return res, err
	}
	if ref.Digest != "" {
		targets = append(targets, ref.Digest)
	}
	for _, t := range drop {
		if err := m.records.DeleteTag(t.upstream, t.repo, t.tag); err != nil {
			return res, err
		}
		res.Tags++
	}
	keep := m.reachable(kept)
	for d, size := range m.reachable(targets) {
		if _, shared := keep[d]; shared {
			continue
		}
		if err := m.store.Delete(d); err != nil {
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			return res, err
		}
		res.Objects++
		res.Bytes += size
	}
	return res, nil
}

// DefaultUpstream returns the name of the upstream serving requests that
// name no registry.
func (m *Mirror) DefaultUpstream() string { return m.defaultName }

// Mirrors reports whether registry (any alias) is an upstream of this
// mirror.
func (m *Mirror) Mirrors(registry string) bool {
	_, ok := m.upstreams[CanonicalRegistry(registry)]
	return ok
}
