package hubtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// registryRef is a reference to repo:tag on the raw registry.
func (h *Hub) registryRef(repo, tag string) (name.Reference, error) {
	return name.ParseReference(strings.TrimPrefix(h.RegistryURL, "http://")+"/"+repo+":"+tag, name.Insecure)
}

// randomImage makes an image of random layers, with OCI media types when
// oci is set, else Docker schema 2.
func randomImage(layers int, layerSize int64, oci bool) (v1.Image, error) {
	img, err := random.Image(layerSize, int64(layers))
	if err != nil {
		return nil, err
	}
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	return img, nil
}

// PushImage pushes an image of random layers to repo:tag and returns it
// and its manifest digest.
func (h *Hub) PushImage(repo, tag string, layers int, layerSize int64, oci bool) (v1.Image, string, error) {
	img, err := randomImage(layers, layerSize, oci)
	if err != nil {
		return nil, "", err
	}
	ref, err := h.registryRef(repo, tag)
	if err != nil {
		return nil, "", err
	}
	if err := remote.Write(ref, img); err != nil {
		return nil, "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, "", err
	}
	return img, d.String(), nil
}

// PushIndex pushes a multi-platform index (an OCI index, or a Docker
// manifest list) of small random images to repo:tag and returns it and its
// digest. Platforms are "os/arch" or "os/arch/variant".
func (h *Hub) PushIndex(repo, tag string, platforms []string, oci bool) (v1.ImageIndex, string, error) {
	var idx v1.ImageIndex = empty.Index
	if oci {
		idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	} else {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	for _, p := range platforms {
		parts := strings.Split(p, "/")
		if len(parts) < 2 {
			return nil, "", fmt.Errorf("platform %q is not os/arch[/variant]", p)
		}
		img, err := randomImage(1, 1024, oci)
		if err != nil {
			return nil, "", err
		}
		plat := &v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) > 2 {
			plat.Variant = parts[2]
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	ref, err := h.registryRef(repo, tag)
	if err != nil {
		return nil, "", err
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		return nil, "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, "", err
	}
	return idx, d.String(), nil
}

// seededReader yields size deterministic pseudo-random bytes.
func seededReader(size, seed int64) io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// PushLargeBlobImage pushes an image with one layer of size pseudo-random
// bytes derived from seed, streamed twice (once to hash, once to upload)
// so the blob is never held in memory. It returns the layer's digest and
// the manifest's.
func (h *Hub) PushLargeBlobImage(repo, tag string, size, seed int64) (layer, manifest string, err error) {
	hash := sha256.New()
	if _, err := io.Copy(hash, seededReader(size, seed)); err != nil {
		return "", "", err
	}
	layer = "sha256:" + hex.EncodeToString(hash.Sum(nil))
	if err := h.uploadBlob(repo, layer, seededReader(size, seed), size); err != nil {
		return "", "", err
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layer}},
	})
	configDigest := digestOf(config)
	if err := h.uploadBlob(repo, configDigest, bytes.NewReader(config), int64(len(config))); err != nil {
		return "", "", err
	}
	m, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     string(types.DockerManifestSchema2),
		"config":        map[string]any{"mediaType": string(types.DockerConfigJSON), "digest": configDigest, "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": string(types.DockerUncompressedLayer), "digest": layer, "size": size}},
	})
	req, _ := http.NewRequest(http.MethodPut, h.RegistryURL+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(m))
	req.Header.Set("Content-Type", string(types.DockerManifestSchema2))
	if err := expect(http.DefaultClient.Do(req))(http.StatusCreated); err != nil {
		return "", "", fmt.Errorf("pushing manifest: %w", err)
	}
	return layer, digestOf(m), nil
}

// uploadBlob streams a blob into the registry: POST an upload, PATCH the
// body, PUT with the digest.
func (h *Hub) uploadBlob(repo, dgst string, body io.Reader, size int64) error {
	resp, err := http.Post(h.RegistryURL+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err := expect(resp, err)(http.StatusAccepted); err != nil {
		return fmt.Errorf("starting upload: %w", err)
	}
	loc, err := resp.Location()
	if err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodPatch, loc.String(), body)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err := expect(resp, err)(http.StatusAccepted); err != nil {
		return fmt.Errorf("uploading: %w", err)
	}
	if loc, err = resp.Location(); err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", dgst)
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequest(http.MethodPut, loc.String(), nil)
	if err := expect(http.DefaultClient.Do(req))(http.StatusCreated); err != nil {
		return fmt.Errorf("committing upload: %w", err)
	}
	return nil
}

// expect checks a response's status and closes its body.
func expect(resp *http.Response, err error) func(status int) error {
	return func(status int) error {
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != status {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, status, b)
		}
		return nil
	}
}

// digestOf returns the sha256 digest of b.
func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
