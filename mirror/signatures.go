package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// Signatures are looked up through the mirror itself, with the requesting
// client's credentials: cosign's sha256-<hex>.sig tag, and the referrers of
// the manifest (the upstream's referrers API, else the referrers tag
// schema), of which sigstore bundles and cosign signatures count. What is
// fetched is cached like any other content.
//
// An image index passes a signature rule when it is signed itself, or when
// one of the platform manifests it lists is (the client then asks for a
// platform manifest, which is checked itself). A platform manifest passes
// when it is signed itself, or when an index that lists it was found
// signed: cosign signs the index of a multi-platform image by default,
// and a signature over the index digest covers the digests it lists.

// maxIndexChildrenChecked bounds the platform manifests of an unsigned
// index whose signatures are looked up.
const maxIndexChildrenChecked = 16

// verdictKey identifies one verdict being reached, as the key of an
// access.Key: shared by concurrent requests of the same identity for the
// same manifest.
type verdictKey struct {
	rule *access.VerifyRule
	d    digest.Digest
}

// signatureRef is one signature manifest found for a manifest.
type signatureRef struct {
	source string
	digest digest.Digest
	data   []byte
}

// verdict returns rule's verdict for mc: a fresh one from the rule's
// cache; else the same verdict when the set of signatures did not change;
// else a new one from the signatures. depth limits the walk through an
// index's children.
func (m *Mirror) verdict(ctx context.Context, t target, rule *access.VerifyRule, mc manifestContent, depth int) (access.Verdict, error) {
	now := m.now()
	if vd, ok := rule.Fresh(mc.digest, now); ok {
		return vd, nil
	}
	refs, err := m.signatureRefs(ctx, t, mc.digest)
	if err != nil {
		// While the upstream cannot answer, the last verdict stands, as a
		// stale tag is served.
		if last, ok := rule.Last(mc.digest); ok && staleAllowed(err) {
			if ce := m.log.Check(zapcore.DebugLevel, "signature verdict kept: the signatures could not be looked up"); ce != nil {
				ce.Write(zap.String("rule", rule.ID), zap.String("digest", mc.digest.String()), zap.Error(err))
			}
			return last, nil
		}
		return access.Verdict{}, err
	}
	set := ""
	for _, r := range refs {
		set += r.digest.String() + ","
	}
	if vd, ok := rule.ForSet(mc.digest, set, now); ok && vd.OK {
		return vd, nil
	}
	var sigs []access.Signature
	blob := func(d digest.Digest, max int64) ([]byte, error) { return m.readSmallBlob(ctx, t, d, max) }
	for _, r := range refs {
		found, err := access.ManifestSignatures(r.data, r.source, blob)
		if err != nil {
			if ctx.Err() != nil {
				return access.Verdict{}, ctx.Err()
			}
			sigs = append(sigs, access.Signature{Source: r.source}) // counted as found, fails with its reason
			continue
		}
		sigs = append(sigs, found...)
	}
	vd := rule.Verify(mc.digest, sigs)
	if !vd.OK && depth == 0 {
		if alt, ok := m.signedRelative(ctx, t, rule, mc); ok {
			vd = alt
			vd.Borrowed = true
		}
	}
	if vd.OK && oci.IsIndex(mc.mediaType) {
		if children, _, _, err := oci.ManifestRefs(mc.data); err == nil {
			for _, c := range children {
				if cd, err := digest.Parse(c.Digest); err == nil {
					rule.RememberParent(cd, mc.digest)
				}
			}
		}
	}
	if vd.OK || depth == 0 {
		// A refusal reached while checking a relative is not kept: the
		// manifest, asked for itself, may pass through another relative.
		rule.Remember(mc.digest, set, vd, now)
	}
	return vd, nil
}

// signedRelative finds a signed relative of an unsigned manifest: for an
// index, a signed platform manifest it lists; for a platform manifest, a
// signed index known to list it.
func (m *Mirror) signedRelative(ctx context.Context, t target, rule *access.VerifyRule, mc manifestContent) (access.Verdict, bool) {
	if oci.IsIndex(mc.mediaType) {
		children, _, _, err := oci.ManifestRefs(mc.data)
		if err != nil {
			return access.Verdict{}, false
		}
		for i, c := range children {
			if i == maxIndexChildrenChecked {
				break
			}
			cd, err := digest.Parse(c.Digest)
			if err != nil {
				continue
			}
			child, err := m.manifestByDigest(ctx, t, cd)
			if err != nil {
				continue
			}
			if vd, err := m.verdict(ctx, t, rule, child, 1); err == nil && vd.OK {
				return access.Verdict{OK: true, Reason: "lists platform manifest " + cd.String() + ", " + vd.Reason}, true
			}
		}
		return access.Verdict{}, false
	}
	parent, ok := rule.Parent(mc.digest)
	if !ok {
		return access.Verdict{}, false
	}
	pmc, err := m.manifestByDigest(ctx, t, parent)
	if err != nil {
		return access.Verdict{}, false
	}
	vd, err := m.verdict(ctx, t, rule, pmc, 1)
	if err != nil || !vd.OK || !strings.HasPrefix(vd.Reason, "signed by") {
		return access.Verdict{}, false
	}
	return access.Verdict{OK: true, Reason: "listed by index " + parent.String() + ", " + vd.Reason}, true
}

// signatureRefs looks up the signature manifests of d: cosign's tag, and
// the referrers that are signatures or sigstore bundles.
func (m *Mirror) signatureRefs(ctx context.Context, t target, d digest.Digest) ([]signatureRef, error) {
	var refs []signatureRef
	tag := access.CosignTag(d)
	mc, err := m.manifestByTag(ctx, t, tag, nil)
	switch {
	case err == nil:
		refs = append(refs, signatureRef{source: "tag " + tag, digest: mc.digest, data: mc.data})
	case !isNotFound(err):
		return nil, fmt.Errorf("looking up the signatures of %s: %w", d, err)
	}
	index, err := m.referrersOf(ctx, t, d, "")
	if err != nil {
		err = fmt.Errorf("looking up the referrers of %s: %w", d, err)
		if len(refs) == 0 || ctx.Err() != nil {
			return nil, err
		}
		// The cosign tag gave signatures: they are checked without the
		// referrers rather than thrown away with them.
		m.referrersSkipped(t, d, err)
		return refs, nil
	}
	tagged := len(refs)
	for _, desc := range index.Manifests {
		// cosign's referrers tag lists its bundles with the artifact type
		// of their empty config: such referrers are read too.
		switch {
		case access.IsBundleArtifact(desc.ArtifactType), desc.ArtifactType == cosignSignatureArtifact,
			desc.ArtifactType == emptyArtifact, desc.ArtifactType == "":
		default:
			continue
		}
		if len(refs) == access.MaxSignaturesPerManifest {
			break
		}
		rd, err := digest.Parse(desc.Digest)
		if err != nil {
			continue
		}
		rmc, err := m.manifestByDigest(ctx, t, rd)
		if err != nil {
			err = fmt.Errorf("reading referrer %s of %s: %w", rd, d, err)
			if tagged == 0 || ctx.Err() != nil {
				return nil, err
			}
			m.referrersSkipped(t, d, err)
			refs = refs[:tagged]
			break
		}
		refs = append(refs, signatureRef{source: "referrer " + rd.String(), digest: rd, data: rmc.data})
	}
	slices.SortFunc(refs, func(a, b signatureRef) int { return strings.Compare(a.digest.String(), b.digest.String()) })
	return refs, nil
}

// referrersSkipped logs that the referrers of d could not be read and the
// signatures of the cosign tag are checked alone.
func (m *Mirror) referrersSkipped(t target, d digest.Digest, err error) {
	if ce := m.log.Check(zapcore.DebugLevel, "referrers not read, checking the signature tag alone"); ce != nil {
		ce.Write(zap.String("upstream", t.registry), zap.String("repository", t.repo),
			zap.String("digest", d.String()), zap.Error(err))
	}
}

// cosignSignatureArtifact is the artifact type of cosign signatures stored
// as referrers (OCI 1.1 mode).
const cosignSignatureArtifact = "application/vnd.dev.cosign.artifact.sig.v1+json"

// emptyArtifact is the media type of the OCI empty descriptor.
const emptyArtifact = "application/vnd.oci.empty.v1+json"

// isNotFound reports whether err is an upstream 404.
func isNotFound(err error) bool {
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Status == http.StatusNotFound {
		return true
	}
	var oe *oci.Error
	return errors.As(err, &oe) && oe.Status == http.StatusNotFound
}

// referrersOf returns the referrers of d: the upstream's referrers API, or
// when it has none (404), the referrers tag schema.
func (m *Mirror) referrersOf(ctx context.Context, t target, d digest.Digest, artifactType string) (referrersIndex, error) {
	q := map[string][]string{}
	if artifactType != "" {
		q["artifactType"] = []string{artifactType}
	}
	resp, err := m.upstreamDo(ctx, t, upstream.Request{
		Method: http.MethodGet, Repository: t.repo, Path: "referrers/" + d.String(), Query: q,
		Header: http.Header{"Accept": {oci.MediaTypeOCIIndex}},
	})
	if err != nil {
		if !isNotFound(err) {
			return referrersIndex{}, err
		}
		return m.referrersFromTag(ctx, t, d)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
	if err != nil {
		return referrersIndex{}, fmt.Errorf("reading referrers: %w", err)
	}
	if len(body) > maxListBody {
		return referrersIndex{}, badUpstream("referrers list is larger than the %d bytes allowed", maxListBody)
	}
	var index referrersIndex
	if err := json.Unmarshal(body, &index); err != nil {
		return referrersIndex{}, badUpstream("referrers of %s are not an index", d)
	}
	return index, nil
}

// readSmallBlob returns blob d of t's repository (a signature payload or
// bundle) through the cache: stored, or filled now with the client's
// credentials. It reads at most max bytes.
func (m *Mirror) readSmallBlob(ctx context.Context, t target, d digest.Digest, max int64) ([]byte, error) {
	if data, _, err := m.store.ReadAll(d, max); err == nil {
		if err := m.mayServe(ctx, t, oci.KindBlob, d); err != nil {
			return nil, err
		}
		return data, nil
	} else if errors.Is(err, cache.ErrTooLarge) {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, max)
	}
	rd, err := m.fillBlob(ctx, t, d)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	if rd.Size() > max {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, max)
	}
	data, err := io.ReadAll(io.LimitReader(rd, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", d, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, max)
	}
	return data, nil
}
