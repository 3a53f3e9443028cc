// Command imagebuild assembles regcache's container image from caddy
// binaries built by deploy/build.sh, without a base image and without a
// container engine, reproducibly: the same binaries, Caddyfile, CA
// certificates and SOURCE_DATE_EPOCH give the same digests.
//
// It writes into -out:
//
//	oci/                        an OCI image layout: index.json names the
//	                            multi-platform index, tagged with the version
//	regcache-<os>-<arch>.tar    per platform, a tar that both `docker load`
//	                            (manifest.json) and `podman load` (OCI layout) accept
//
// deploy/build-image.sh runs it.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user, its data directory and its port.
const (
	uid, gid   = 1000, 1000
	dataDir    = "/data"
	port       = "5000/tcp"
	caddyfile  = "/etc/caddy/Caddyfile"
	caBundle   = "/etc/ssl/certs/ca-certificates.crt"
	binaryPath = "/usr/bin/caddy"
)

// options are the command's flags.
type options struct {
	binaries  map[string]string // platform (linux/amd64) -> caddy binary
	caddyfile string
	caDir     string
	version   string
	revision  string
	name      string
	created   time.Time
	out       string
}

func main() {
	var o options
	var bins stringList
	var epoch int64
	flag.Var(&bins, "binary", "PLATFORM=PATH of a caddy binary (linux/amd64=dist/caddy-linux-amd64); repeatable")
	flag.StringVar(&o.caddyfile, "caddyfile", "deploy/image/Caddyfile", "the image's default Caddyfile")
	flag.StringVar(&o.caDir, "ca-dir", "/usr/share/ca-certificates/mozilla", "directory of the CA certificates (*.crt) to trust")
	flag.StringVar(&o.version, "version", "", "regcache's version (image tag and label)")
	flag.StringVar(&o.revision, "revision", "", "the source's git revision (label)")
	flag.StringVar(&o.name, "name", "regcache", "image name for docker load and podman load")
	flag.Int64Var(&epoch, "source-date-epoch", 0, "creation time of the image and its files, seconds since 1970 (SOURCE_DATE_EPOCH)")
	flag.StringVar(&o.out, "out", "dist", "output directory")
	flag.Parse()
	o.created = time.Unix(epoch, 0).UTC()
	o.binaries = map[string]string{}
	for _, b := range bins {
		platform, path, ok := strings.Cut(b, "=")
		if !ok {
			fatal(fmt.Errorf("-binary %q: want PLATFORM=PATH", b))
		}
		o.binaries[platform] = path
	}
	if len(o.binaries) == 0 || o.version == "" {
		fatal(errors.New("-binary and -version are required"))
	}
	if err := build(o); err != nil {
		fatal(err)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "imagebuild:", err)
	os.Exit(1)
}

// build writes the layout and the per-platform tars.
func build(o options) error {
	conf, err := os.ReadFile(o.caddyfile)
	if err != nil {
		return fmt.Errorf("reading the Caddyfile: %w", err)
	}
	certs, err := bundleCAs(o.caDir)
	if err != nil {
		return err
	}
	platforms := make([]string, 0, len(o.binaries))
	for p := range o.binaries {
		platforms = append(platforms, p)
	}
	slices.Sort(platforms)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	images := map[string]v1.Image{}
	for _, p := range platforms {
		img, err := platformImage(o, p, conf, certs)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		images[p] = img
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	ociDir := filepath.Join(o.out, "oci")
	if err := os.RemoveAll(ociDir); err != nil {
		return err
	}
	// index.json names the multi-platform index by the version, as
	// skopeo's oci:dist/oci:<version> and crane push expect.
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.version,
	})); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s  index %s\n", ociDir, d)
	for _, p := range platforms {
		path := filepath.Join(o.out, "regcache-"+strings.ReplaceAll(p, "/", "-")+".tar")
		if err := writeArchive(path, o, images[p]); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		d, err := images[p].Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s  %s  manifest %s\n", path, p, d)
	}
	return nil
}

// bundleCAs concatenates the *.crt files of dir in name order.
func bundleCAs(dir string) ([]byte, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.crt"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no CA certificates (*.crt) in %s: install the ca-certificates package", dir)
	}
	slices.Sort(names)
	var b bytes.Buffer
	for _, n := range names {
		c, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		b.Write(bytes.TrimSpace(c))
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// platformImage builds the image of one platform: one layer with the
// binary, the Caddyfile, the CA bundle, the user and the data directory.
func platformImage(o options, platform string, conf, certs []byte) (v1.Image, error) {
	bin, err := os.ReadFile(o.binaries[platform])
	if err != nil {
		return nil, fmt.Errorf("reading the binary: %w", err)
	}
	plat, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfs(o.created, bin, conf, certs)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: o.created},
		CreatedBy: "deploy/build-image.sh",
		Comment:   "regcache " + o.version,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: o.created}
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Config = v1.Config{
		User: fmt.Sprintf("%d:%d", uid, gid),
		Env: []string{
			"PATH=/usr/bin:/bin",
			"HOME=" + dataDir,
			// Caddy's data (certificates, its local CA) under /data/caddy,
			// its autosaved config under /data/config/caddy.
			"XDG_DATA_HOME=" + dataDir,
			"XDG_CONFIG_HOME=" + dataDir + "/config",
			"SSL_CERT_FILE=" + caBundle,
		},
		Cmd:          []string{"caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"},
		WorkingDir:   dataDir,
		ExposedPorts: map[string]struct{}{port: {}},
		Volumes:      map[string]struct{}{dataDir: {}},
		StopSignal:   "SIGTERM",
		Labels: map[string]string{
			"org.opencontainers.image.title":       "regcache",
			"org.opencontainers.image.description": "A pull-through cache for container registries, in one Caddy binary",
			"org.opencontainers.image.version":     o.version,
			"org.opencontainers.image.revision":    o.revision,
			"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
			"org.opencontainers.image.source":      "https://github.com/regcache/regcache",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the image's only layer, a tar with sorted entries, fixed
// times and owners.
func rootfs(created time.Time, bin, conf, certs []byte) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nregcache:x:%d:%d:regcache:%s:/sbin/nologin\n", uid, gid, dataDir)
	group := fmt.Sprintf("root:x:0:\nregcache:x:%d:\n", gid)
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		body     []byte // nil: a directory
	}
	entries := []entry{
		{name: "data/", mode: 0o750, uid: uid, gid: gid},
		{name: "data/config/", mode: 0o750, uid: uid, gid: gid},
		{name: "etc/", mode: 0o755},
		{name: "etc/caddy/", mode: 0o755},
		{name: "etc/caddy/Caddyfile", mode: 0o644, body: conf},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		// Container runtimes mount their own; without a runtime (a chroot)
		// this one resolves localhost.
		{name: "etc/hosts", mode: 0o644, body: []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n")},
		{name: "etc/nsswitch.conf", mode: 0o644, body: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: certs},
		{name: "tmp/", mode: 0o1777},
		{name: "usr/", mode: 0o755},
		{name: "usr/bin/", mode: 0o755},
		{name: "usr/bin/caddy", mode: 0o755, body: bin},
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: created, Format: tar.FormatPAX}
		if e.body == nil {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes img as one tar that is both an OCI image layout
// (oci-layout, index.json, blobs/, for podman load) and a Docker image
// archive (manifest.json, for docker load, which reads the same blobs).
func writeArchive(path string, o options, img v1.Image) error {
	tmp, err := os.MkdirTemp(o.out, ".archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	tags := []string{o.name + ":" + o.version, o.name + ":latest"}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.version,
		"io.containerd.image.name":          "docker.io/library/" + tags[0],
	})); err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var layerFiles []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		layerFiles = append(layerFiles, "blobs/sha256/"+d.Hex)
	}
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   "blobs/sha256/" + cfgName.Hex,
		"RepoTags": tags,
		"Layers":   layerFiles,
	}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "manifest.json"), manifest, 0o644); err != nil {
		return err
	}
	return tarDir(path, tmp, o.created)
}

// tarDir writes the files under dir into a tar at path, sorted, with fixed
// times and owners.
func tarDir(path, dir string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(names)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, p := range names {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}
		if fi.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
		} else {
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.IsDir() {
			if err := copyFile(tw, p); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// copyFile copies the file at p to w.
func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Interface guards
var _ flag.Value = (*stringList)(nil)
