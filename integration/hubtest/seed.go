package hubtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// registryRef returns a reference to repo:tag in the raw registry.
func (h *Hub) registryRef(repo, tag string) (name.Reference, error) {
	ref, err := name.ParseReference(strings.TrimPrefix(h.RegistryURL, "http://")+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("parsing reference %s:%s: %w", repo, tag, err)
	}
	return ref, nil
}

// randomImage makes a linux image of random layers for platform p (nil:
// linux/amd64), with OCI media types when oci is set, else Docker schema 2.
func randomImage(layers int, layerSize int64, oci bool, p *v1.Platform) (v1.Image, error) {
	if p == nil {
		p = &v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	img := empty.Image
	layerType := types.DockerLayer
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		layerType = types.OCILayer
	}
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("setting the image config: %w", err)
	}
	ls := make([]v1.Layer, 0, layers)
	for range layers {
		l, err := random.Layer(layerSize, layerType)
		if err != nil {
			return nil, fmt.Errorf("making a random layer: %w", err)
		}
		ls = append(ls, l)
	}
	if img, err = mutate.AppendLayers(img, ls...); err != nil {
		return nil, fmt.Errorf("appending layers: %w", err)
	}
	return img, nil
}

// PushImage pushes an image of random layers (each a tar of one file of
// layerSize random bytes) to repo:tag in the registry, with OCI media types
// when oci is set, else Docker schema 2. It returns the image and its
// manifest digest.
func (h *Hub) PushImage(repo, tag string, layers int, layerSize int64, oci bool) (v1.Image, string, error) {
	img, err := randomImage(layers, layerSize, oci, nil)
	if err != nil {
		return nil, "", err
	}
	ref, err := h.registryRef(repo, tag)
	if err != nil {
		return nil, "", err
	}
	if err := remote.Write(ref, img, remote.WithTransport(h.transport)); err != nil {
		return nil, "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, "", fmt.Errorf("digest of %s: %w", ref, err)
	}
	return img, d.String(), nil
}

// PushIndex pushes a multi-platform index (an OCI index when oci is set,
// else a Docker manifest list) of small random images to repo:tag and
// returns it and its digest. Platforms are "os/arch" or "os/arch/variant".
func (h *Hub) PushIndex(repo, tag string, platforms []string, oci bool) (v1.ImageIndex, string, error) {
	var idx v1.ImageIndex = empty.Index
	if oci {
		idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	} else {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	for _, s := range platforms {
		parts := strings.Split(s, "/")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, "", fmt.Errorf("platform %q is not os/arch[/variant]", s)
		}
		p := &v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			p.Variant = parts[2]
		}
		img, err := randomImage(1, 1024, oci, p)
		if err != nil {
			return nil, "", err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	ref, err := h.registryRef(repo, tag)
	if err != nil {
		return nil, "", err
	}
	if err := remote.WriteIndex(ref, idx, remote.WithTransport(h.transport)); err != nil {
		return nil, "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, "", fmt.Errorf("digest of %s: %w", ref, err)
	}
	return idx, d.String(), nil
}

// SeededBlob returns a reader of size deterministic pseudo-random bytes
// derived from seed: the content of PushLargeBlobImage's layer.
func SeededBlob(size, seed int64) io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), size)
}

// PushLargeBlobImage pushes to repo:tag an image of one uncompressed tar
// layer media type whose content is SeededBlob(size, seed). The blob is
// streamed twice, once to hash it and once to upload it, so it is never
// held in memory. It returns the layer's digest and the manifest's.
func (h *Hub) PushLargeBlobImage(repo, tag string, size, seed int64) (layer, manifest string, err error) {
	layers, manifest, err := h.PushSeededImage(repo, tag, size, seed)
	if err != nil {
		return "", "", err
	}
	return layers[0], manifest, nil
}

// PushSeededImage pushes to repo:tag an image of one layer per seed, each
// of the uncompressed tar layer media type with SeededBlob(size, seed) as
// its content, streamed as PushLargeBlobImage does. It returns the layers'
// digests and the manifest's.
func (h *Hub) PushSeededImage(repo, tag string, size int64, seeds ...int64) (layers []string, manifest string, err error) {
	var descs []v1.Descriptor
	var diffIDs []v1.Hash
	for _, seed := range seeds {
		hash := sha256.New()
		if _, err := io.Copy(hash, SeededBlob(size, seed)); err != nil {
			return nil, "", fmt.Errorf("hashing the layer: %w", err)
		}
		layer := "sha256:" + hex.EncodeToString(hash.Sum(nil))
		if err := h.uploadBlob(repo, layer, SeededBlob(size, seed), size); err != nil {
			return nil, "", err
		}
		layers = append(layers, layer)
		diffIDs = append(diffIDs, mustHash(layer))
		descs = append(descs, v1.Descriptor{MediaType: types.DockerUncompressedLayer, Digest: mustHash(layer), Size: size})
	}
	config, err := json.Marshal(v1.ConfigFile{
		OS: "linux", Architecture: "amd64",
		RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	if err != nil {
		return nil, "", fmt.Errorf("encoding the config: %w", err)
	}
	configDigest := digestOf(config)
	if err := h.uploadBlob(repo, configDigest, bytes.NewReader(config), int64(len(config))); err != nil {
		return nil, "", err
	}
	m, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Digest: mustHash(configDigest), Size: int64(len(config))},
		Layers:        descs,
	})
	if err != nil {
		return nil, "", fmt.Errorf("encoding the manifest: %w", err)
	}
	req, err := http.NewRequest(http.MethodPut, h.RegistryURL+"/v2/"+repo+"/manifests/"+url.PathEscape(tag), bytes.NewReader(m))
	if err != nil {
		return nil, "", fmt.Errorf("pushing the manifest: %w", err)
	}
	req.Header.Set("Content-Type", string(types.DockerManifestSchema2))
	if _, err := h.expect(req, http.StatusCreated); err != nil {
		return nil, "", fmt.Errorf("pushing the manifest of %s:%s: %w", repo, tag, err)
	}
	return layers, digestOf(m), nil
}

// uploadBlob streams a blob of size bytes into repo: POST an upload, PATCH
// the body, PUT with the digest.
func (h *Hub) uploadBlob(repo, dgst string, body io.Reader, size int64) error {
	req, err := http.NewRequest(http.MethodPost, h.RegistryURL+"/v2/"+repo+"/blobs/uploads/", nil)
	if err != nil {
		return fmt.Errorf("starting the upload of %s: %w", dgst, err)
	}
	loc, err := h.expect(req, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("starting the upload of %s: %w", dgst, err)
	}
	if req, err = http.NewRequest(http.MethodPatch, loc.String(), body); err != nil {
		return fmt.Errorf("uploading %s: %w", dgst, err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	if loc, err = h.expect(req, http.StatusAccepted); err != nil {
		return fmt.Errorf("uploading %s: %w", dgst, err)
	}
	q := loc.Query()
	q.Set("digest", dgst)
	loc.RawQuery = q.Encode()
	if req, err = http.NewRequest(http.MethodPut, loc.String(), nil); err != nil {
		return fmt.Errorf("committing %s: %w", dgst, err)
	}
	if _, err := h.expect(req, http.StatusCreated); err != nil {
		return fmt.Errorf("committing %s: %w", dgst, err)
	}
	return nil
}

// expect sends req to the registry, checks the answer's status and
// returns its Location, resolved against the request URL, if any.
func (h *Hub) expect(req *http.Request, status int) (*url.URL, error) {
	resp, err := h.transport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("status %d, want %d: %s", resp.StatusCode, status, bytes.TrimSpace(b))
	}
	loc, err := resp.Location()
	if errors.Is(err, http.ErrNoLocation) {
		return nil, nil
	}
	return loc, err
}

// digestOf returns the sha256 digest of b.
func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// mustHash converts a digest this package computed into a v1.Hash.
func mustHash(d string) v1.Hash {
	h, err := v1.NewHash(d)
	if err != nil {
		panic("hubtest: digest " + d + ": " + err.Error())
	}
	return h
}
