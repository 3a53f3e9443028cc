package caddymodule

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/mirror"
)

// newClientConfigCommand is `caddy registry-cache client-config`.
func newClientConfigCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "client-config --mirror URL [--ca FILE] [--registry R]... [--output DIR]",
		Short: "Print the Docker, containerd and podman configuration that pulls through the mirror",
		Long: `
Prints the files that make clients pull through the mirror at --mirror (the
URL clients reach it at, https://mirror.office.example or
http://10.0.0.5:5000):

  /etc/docker/daemon.json                        Docker (Docker Hub images)
  /etc/containerd/certs.d/<registry>/hosts.toml  containerd, Kubernetes nodes
  /etc/containers/registries.conf.d/50-regcache.conf  podman, CRI-O, skopeo

with one containerd hosts.toml and one registries.conf entry per registry the
mirror serves: the --registry flags, else the upstreams of the running
config, read from its admin API (--address). --ca adds the mirror's CA
certificate (tls internal: pki/authorities/local/root.crt in Caddy's data
directory) where each client looks for it. --output DIR writes the files
under DIR instead (--output / puts them in place; an existing daemon.json is
replaced, so merge by hand if it holds other settings).
`,
		Args: cobra.NoArgs,
		RunE: runClientConfig,
	}
	c.Flags().String("mirror", "", "URL clients reach the mirror at (required)")
	c.Flags().String("ca", "", "PEM file of the CA certificate clients must trust for the mirror")
	c.Flags().StringArray("registry", nil, "registry to configure (docker.io, ghcr.io…); repeatable; default: the running config's upstreams")
	c.Flags().String("output", "", "write the files under this directory instead of printing them")
	return c
}

// runClientConfig is `caddy registry-cache client-config`.
func runClientConfig(cmd *cobra.Command, _ []string) error {
	mirrorURL, _ := cmd.Flags().GetString("mirror")
	caFile, _ := cmd.Flags().GetString("ca")
	registries, _ := cmd.Flags().GetStringArray("registry")
	output, _ := cmd.Flags().GetString("output")
	if mirrorURL == "" {
		return errors.New("--mirror is required: the URL clients reach the mirror at")
	}
	var ca []byte
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return fmt.Errorf("reading the CA certificate: %w", err)
		}
		ca = b
	}
	if len(registries) == 0 {
		names, err := runningUpstreams(cmd)
		if err != nil {
			return fmt.Errorf("reading the running config's upstreams (give them with --registry instead): %w", err)
		}
		registries = names
	}
	files, err := clientConfigFiles(mirrorURL, ca, registries)
	if err != nil {
		return err
	}
	if output != "" {
		return writeClientFiles(output, files)
	}
	out := cmd.OutOrStdout()
	for i, f := range files {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "==> %s <==\n%s", f.Path, f.Content)
	}
	return nil
}

// runningUpstreams returns the names of the upstreams of every registry
// cache of the running config, from the admin API.
func runningUpstreams(cmd *cobra.Command) ([]string, error) {
	resp, err := adminRequest(cmd, http.MethodGet, "/registry_cache/stats", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var stats StatsResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&stats); err != nil {
		return nil, fmt.Errorf("reading the stats: %w", err)
	}
	var names []string
	for _, c := range stats.Caches {
		for _, u := range c.Upstreams {
			names = append(names, u.Name)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("the running config has no registry_cache handler")
	}
	return names, nil
}

// clientFile is one configuration file for a client machine.
type clientFile struct {
	// Path is where the file goes on the client machine.
	Path string
	// Content is the file's text.
	Content string
}

// Where each client reads its configuration.
const (
	dockerDaemonJSON   = "/etc/docker/daemon.json"
	dockerCertsDir     = "/etc/docker/certs.d"
	containerdHostsDir = "/etc/containerd/certs.d"
	// containerdCA is the CA's file name next to each hosts.toml, which
	// containerd resolves relative to the file's directory.
	containerdCA       = "regcache-ca.crt"
	containersDropIn   = "/etc/containers/registries.conf.d/50-regcache.conf"
	containersCertsDir = "/etc/containers/certs.d"
)

// clientConfigFiles builds the client configuration for a mirror reached at
// mirrorURL that serves registries, with ca (PEM, may be nil) as the CA
// certificate clients must trust for it.
func clientConfigFiles(mirrorURL string, ca []byte, registries []string) ([]clientFile, error) {
	u, err := parseMirrorURL(mirrorURL)
	if err != nil {
		return nil, err
	}
	regs, err := canonicalRegistries(registries)
	if err != nil {
		return nil, err
	}
	if len(ca) > 0 {
		if err := checkCA(ca); err != nil {
			return nil, err
		}
	}
	plain := u.Scheme == "http"
	origin := u.Scheme + "://" + u.Host
	var files []clientFile

	// Docker: registry-mirrors serves Docker Hub only, and asks the mirror
	// without naming the registry: the mirror's default upstream answers.
	daemon := map[string][]string{}
	if slices.Contains(regs, mirror.DockerHub) {
		daemon["registry-mirrors"] = []string{origin}
	}
	if plain {
		// Path-prefix pulls (mirror/ghcr.io/owner/app) over plain HTTP.
		daemon["insecure-registries"] = []string{u.Host}
	}
	b, err := json.MarshalIndent(daemon, "", "  ")
	if err != nil {
		return nil, err
	}
	files = append(files, clientFile{Path: dockerDaemonJSON, Content: string(b) + "\n"})
	if len(ca) > 0 {
		files = append(files, clientFile{Path: path.Join(dockerCertsDir, u.Host, "ca.crt"), Content: string(ca)})
	}

	// containerd: one hosts.toml per registry; containerd adds
	// ?ns=<registry> to each request to the mirror, which routes by it.
	for _, r := range regs {
		var sb strings.Builder
		fmt.Fprintf(&sb, "# %s through the regcache mirror at %s; containerd asks it with ?ns=%s.\n", r, origin, r)
		fmt.Fprintf(&sb, "server = %q\n\n", registryServer(r))
		fmt.Fprintf(&sb, "[host.%q]\n", origin)
		sb.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
		if len(ca) > 0 {
			fmt.Fprintf(&sb, "  ca = %q\n", containerdCA)
		}
		files = append(files, clientFile{Path: path.Join(containerdHostsDir, r, "hosts.toml"), Content: sb.String()})
		if len(ca) > 0 {
			files = append(files, clientFile{Path: path.Join(containerdHostsDir, r, containerdCA), Content: string(ca)})
		}
	}

	// podman, CRI-O, skopeo: a registries.conf drop-in with a mirror per
	// registry, by path prefix (the mirror's own name for the registry).
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Pulls through the regcache mirror at %s (registries.conf syntax).\n", origin)
	for _, r := range regs {
		fmt.Fprintf(&sb, "\n[[registry]]\nprefix = %q\nlocation = %q\n\n", r, r)
		fmt.Fprintf(&sb, "[[registry.mirror]]\nlocation = %q\n", u.Host+"/"+r)
		if plain {
			sb.WriteString("insecure = true\n")
		}
	}
	files = append(files, clientFile{Path: containersDropIn, Content: sb.String()})
	if len(ca) > 0 {
		files = append(files, clientFile{Path: path.Join(containersCertsDir, u.Host, "ca.crt"), Content: string(ca)})
	}
	return files, nil
}

// parseMirrorURL checks the URL clients reach the mirror at: http or https,
// a host, and nothing else (Docker refuses a mirror URL with a path).
func parseMirrorURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil {
		return nil, fmt.Errorf("--mirror %q: %w", s, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("--mirror %q: the scheme must be https:// or http://", s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("--mirror %q: no host", s)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("--mirror %q: give only the scheme, host and port (clients need the mirror at the root of its host)", s)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return nil, fmt.Errorf("--mirror %q: bad port: %w", s, err)
		}
	}
	u.Host = strings.ToLower(u.Host)
	return u, nil
}

// canonicalRegistries checks registry names, maps aliases to the names the
// mirror knows them by, drops repeats, and sorts them with Docker Hub first.
func canonicalRegistries(names []string) ([]string, error) {
	var regs []string
	for _, n := range names {
		r := mirror.CanonicalRegistry(n)
		u, err := url.Parse("//" + r)
		if r == "" || err != nil || u.Host != r || u.Hostname() == "" || strings.ContainsAny(r, "/@?#") {
			return nil, fmt.Errorf("registry %q: want a registry host name such as docker.io or registry.example.com:5000", n)
		}
		if !slices.Contains(regs, r) {
			regs = append(regs, r)
		}
	}
	if len(regs) == 0 {
		return nil, errors.New("no registry to configure")
	}
	slices.SortFunc(regs, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == mirror.DockerHub:
			return -1
		case b == mirror.DockerHub:
			return 1
		}
		return strings.Compare(a, b)
	})
	return regs, nil
}

// registryServer is the registry's own API endpoint, which containerd uses
// when the mirror fails.
func registryServer(registry string) string {
	if u, ok := mirror.KnownEndpoint(registry); ok {
		return u
	}
	return "https://" + registry
}

// checkCA checks that ca holds PEM certificates and nothing else.
func checkCA(ca []byte) error {
	rest := bytes.TrimSpace(ca)
	n := 0
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "CERTIFICATE" {
			return errors.New("the CA file must hold PEM certificates only")
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("the CA file: %w", err)
		}
		rest = bytes.TrimSpace(rest)
		n++
	}
	if n == 0 {
		return errors.New("the CA file holds no certificate")
	}
	return nil
}

// writeClientFiles writes files under dir, each at its path below it.
func writeClientFiles(dir string, files []clientFile) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := os.WriteFile(p, []byte(f.Content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}
