package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"

	"go.uber.org/zap"

	"github.com/regcache/regcache/access"
	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
)

// The edge policy (access.Policy) is applied here, at the mirror's entry
// points: before anything is fetched for a request (its repository, tag
// or digest), once a manifest is known (its digest, its signatures), and
// to the lists the mirror answers (tags, catalog). A refused request gets
// 403 DENIED naming the rule, costs no upstream request, and is counted
// per rule and logged.

// PolicyStats returns the counters of every rule of the edge policy, in
// configuration order; none without a policy.
func (m *Mirror) PolicyStats() []access.RuleStats { return m.cfg.Policy.Stats() }

// checkPolicy applies the allow, deny and deny_digest rules to a request
// of a repository, before any upstream request: ref is the route's tag or
// digest, "" for a tag list.
func (m *Mirror) checkPolicy(t target, kind oci.Kind, ref string) error {
	if kind == oci.KindTags {
		ref = ""
	}
	dec := m.cfg.Policy.Check(t.registry, t.repo, ref)
	if dec.Allowed {
		return nil
	}
	return m.refuse(t, ref, dec)
}

// refuse counts and logs a refusal and returns its error.
func (m *Mirror) refuse(t target, ref string, dec access.Decision) error {
	dec.Rule.CountRefusal()
	m.log.Info("request denied by policy", zap.String("rule", dec.Rule.ID), zap.String("upstream", t.registry),
		zap.String("repository", t.repo), zap.String("reference", ref))
	return oci.Errorf(http.StatusForbidden, oci.CodeDenied, "%s", dec.Message())
}

// admitManifest applies the policy to a manifest about to be served: its
// digest must not be blocked (a tag may lead to a blocked digest), and
// every signature rule of its repository must pass, or be in audit mode.
func (m *Mirror) admitManifest(ctx context.Context, t target, ref string, mc manifestContent) error {
	if m.cfg.Policy == nil {
		return nil
	}
	if dec := m.cfg.Policy.CheckDigest(mc.digest); !dec.Allowed {
		return m.refuse(t, ref, dec)
	}
	rules := m.cfg.Policy.VerifyRules(t.registry, t.repo)
	if len(rules) == 0 || isSignatureArtifact(ref, mc) {
		return nil
	}
	for _, rule := range rules {
		key := access.KeyOf(t.who, verdictKey{rule: rule, d: mc.digest})
		vd, err := m.verdicts.Do(ctx, key, func(ctx context.Context) (access.Verdict, error) {
			return m.verdict(ctx, t, rule, mc, 0)
		})
		if err != nil {
			if rule.Mode() == access.ModeAudit {
				rule.CountAudit()
				m.log.Warn("signature not checked, served in audit mode", zap.String("rule", rule.ID),
					zap.String("upstream", t.registry), zap.String("repository", t.repo),
					zap.String("digest", mc.digest.String()), zap.Error(err))
				continue
			}
			return err
		}
		if vd.OK {
			continue
		}
		fields := []zap.Field{zap.String("rule", rule.ID), zap.String("upstream", t.registry),
			zap.String("repository", t.repo), zap.String("reference", ref),
			zap.String("digest", mc.digest.String()), zap.String("reason", vd.Reason)}
		if rule.Mode() == access.ModeAudit {
			rule.CountAudit()
			m.log.Warn("manifest without a valid signature served in audit mode", fields...)
			continue
		}
		rule.CountRefusal()
		m.log.Info("manifest denied by policy: no valid signature", fields...)
		return oci.Errorf(http.StatusForbidden, oci.CodeDenied, "denied by policy rule %s (verify %s): %s", rule.ID, rule.Text, vd.Reason)
	}
	return nil
}

// signaturesGuard reports whether signature rules cover t's repository:
// its manifests are served only once admitted, and their layers are not
// fetched ahead before.
func (m *Mirror) signaturesGuard(t target) bool {
	return len(m.cfg.Policy.VerifyRules(t.registry, t.repo)) > 0
}

// admitBlob applies the signature rules to a blob request whose object is
// a manifest the cache holds: its recorded media type is a manifest's, or
// it is small enough to be one and reads as one. Registries store
// manifests as blobs, so a manifest refused by its digest must not be
// served by the same digest from the blobs endpoint (its layers would
// follow). The request then gets the manifest's admission. Nothing is
// read when no signature rule covers the repository.
func (m *Mirror) admitBlob(ctx context.Context, t target, d digest.Digest, mediaType string, size int64) error {
	if size > MaxManifestSize || !m.signaturesGuard(t) {
		return nil
	}
	data, obj, err := m.store.ReadAll(d, MaxManifestSize)
	if err != nil {
		if isManifestMediaType(mediaType) {
			return fmt.Errorf("reading manifest %s to check its signatures: %w", d, err)
		}
		// Not stored yet (a fill of a blob): nothing says it is a
		// manifest.
		return nil
	}
	mt := obj.MediaType
	if !isManifestMediaType(mt) {
		mt = mediaType
	}
	if !isManifestMediaType(mt) {
		mt = oci.DetectMediaType(data)
	}
	if !isManifestMediaType(mt) {
		return nil
	}
	return m.admitManifest(ctx, t, d.String(), manifestContent{digest: d, mediaType: mt, data: data})
}

// admitFilledBlob waits for the fill of blob d (small enough to be a
// manifest) to verify, and applies admitBlob's rule to its bytes: when
// they are a manifest, the request gets the manifest's admission. The
// reader's offset is left alone.
func (m *Mirror) admitFilledBlob(ctx context.Context, t target, rd *cache.Reader, d digest.Digest) error {
	if err := rd.Wait(ctx); err != nil {
		return err
	}
	data, err := io.ReadAll(io.NewSectionReader(rd.File(), 0, MaxManifestSize+1))
	if err != nil {
		return fmt.Errorf("reading blob %s to check whether it is a manifest: %w", d, err)
	}
	if len(data) > MaxManifestSize {
		return nil
	}
	mt := rd.MediaType()
	if !isManifestMediaType(mt) {
		mt = oci.DetectMediaType(data)
	}
	if !isManifestMediaType(mt) {
		return nil
	}
	return m.admitManifest(ctx, t, d.String(), manifestContent{digest: d, mediaType: mt, data: data})
}

// filterTags removes from a tag list answer the tags the policy refuses.
// The body is returned unchanged when nothing is refused.
func (m *Mirror) filterTags(t target, body []byte) []byte {
	if m.cfg.Policy == nil {
		return body
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return body
	}
	kept := list.Tags[:0:0]
	for _, tag := range list.Tags {
		if m.cfg.Policy.Check(t.registry, t.repo, tag).Allowed {
			kept = append(kept, tag)
		}
	}
	if len(kept) == len(list.Tags) {
		return body
	}
	list.Tags = kept
	out, err := json.Marshal(list)
	if err != nil {
		return body
	}
	return out
}

// allowedInCatalog reports whether the catalog may list a repository.
func (m *Mirror) allowedInCatalog(registry, repo string) bool {
	return m.cfg.Policy.Check(registry, repo, "").Allowed
}

// isSignatureArtifact reports whether a manifest is a signature or an
// attestation rather than an image: signature rules do not apply to those
// (they are what is checked, and a client verifying an image through the
// mirror reads them). It is one when every layer is a cosign payload, a
// DSSE envelope or a sigstore bundle, which no client runs; or when it is
// the index of the referrers tag schema (sha256-<hex>), which carries no
// layers, and whose entries are checked on their own when asked for. A
// subject or a tag name alone does not make one: any image can carry them.
func isSignatureArtifact(ref string, mc manifestContent) bool {
	if oci.IsIndex(mc.mediaType) {
		return isDigestTag(ref)
	}
	var mf struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	if json.Unmarshal(mc.data, &mf) != nil || len(mf.Layers) == 0 {
		return false
	}
	for _, l := range mf.Layers {
		switch {
		case l.MediaType == access.CosignPayloadMediaType, l.MediaType == dsseMediaType,
			access.IsBundleArtifact(l.MediaType):
		default:
			return false
		}
	}
	return true
}

// dsseMediaType is the layer media type of in-toto attestations.
const dsseMediaType = "application/vnd.dsse.envelope.v1+json"

// isDigestTag reports whether a tag names a digest the way the referrers
// tag schema does: sha256-<hex>.
func isDigestTag(tag string) bool {
	const prefix = "sha256-"
	if len(tag) != len(prefix)+64 || tag[:len(prefix)] != prefix {
		return false
	}
	for _, c := range tag[len(prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
