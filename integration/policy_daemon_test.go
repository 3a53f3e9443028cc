package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// signedMirror pushes a signed and an unsigned image (prefix/signed:1,
// prefix/unsigned:1 on Docker Hub's test double) and starts a mirror that
// serves only images of prefix/ signed by the key.
func signedMirror(t *testing.T, prefix string, layerSize int64) (m *mirrorSite, signed, unsigned policyImage) {
	t.Helper()
	cosign := clientBinary(t, "cosign")
	key := newCosignKey(t, cosign)
	signed = pushPolicyImage(t, prefix+"/signed", "1", layerSize)
	unsigned = pushPolicyImage(t, prefix+"/unsigned", "1", layerSize)
	cosignSign(t, cosign, key, signed.repo, signed.digest)
	m = startMirror(t, siteOptions{block: fmt.Sprintf("verify docker.io/%s/** {\n\t\t\tkey %s\n\t\t}", prefix, key.public)})
	return m, signed, unsigned
}

// TestPolicyDockerPullsSignedOnly pulls through the mirror with a Docker
// daemon (registry-mirrors): the signed image pulls, the unsigned one
// fails, and the hub's CDN sends no layer byte for it. Without a network,
// the daemon's fallback to Docker Hub fails too.
func TestPolicyDockerPullsSignedOnly(t *testing.T) {
	const layerSize = 128 << 10
	m, signed, unsigned := signedMirror(t, "dockerpolicy", layerSize)
	d := startDockerd(t, fmt.Sprintf(`{
  "registry-mirrors": ["http://%s"],
  "insecure-registries": [%q]
}`, m.Host, m.Host))
	d.docker(t, "pull", signed.repo+":1")
	if got := d.repoDigest(t, signed.repo+":1", signed.repo); got != signed.digest {
		t.Errorf("signed image: RepoDigests digest %s, want %s", got, signed.digest)
	}
	hub.Counters.Reset()
	out, err := exec.Command(d.client, "-H", d.host, "pull", unsigned.repo+":1").CombinedOutput()
	if err == nil {
		t.Errorf("docker pull of the unsigned image succeeded: %s", out)
	}
	if n := hub.Counters.CDNBytes.Load(); n != 0 {
		t.Errorf("refused docker pull: the CDN sent %d bytes, want none", n)
	}
	if d.hasImage(t, unsigned.repo+":1") {
		t.Error("the unsigned image is in the daemon")
	}
}

// TestPolicyContainerdPullsSignedOnly is TestPolicyDockerPullsSignedOnly
// with containerd and a hosts.toml that names the mirror.
func TestPolicyContainerdPullsSignedOnly(t *testing.T) {
	const layerSize = 128 << 10
	ctr := clientBinary(t, "ctr")
	m, signed, unsigned := signedMirror(t, "ctrpolicy", layerSize)
	hosts := t.TempDir()
	writeHostsTOML(t, hosts, "docker.io", "https://registry-1.docker.io", "http://"+m.Host)
	c := startContainerd(t)
	args := []string{"--address", c.Address, "image", "pull", "--hosts-dir", hosts, "--snapshotter", "native"}
	runClient(t, ctr, append(args, "docker.io/"+signed.repo+":1")...)
	if got := c.imageDigest(t, ctr, "docker.io/"+signed.repo+":1"); got != signed.digest {
		t.Errorf("signed image: digest %s, want %s", got, signed.digest)
	}
	hub.Counters.Reset()
	cmd := exec.Command(ctr, append(args, "docker.io/"+unsigned.repo+":1")...)
	cmd.Env = append(cmd.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("ctr pull of the unsigned image succeeded: %s", out)
	}
	if n := hub.Counters.CDNBytes.Load(); n != 0 {
		t.Errorf("refused ctr pull: the CDN sent %d bytes, want none", n)
	}
	if !strings.Contains(string(out), "403") {
		t.Errorf("ctr pull of the unsigned image: %s; want the mirror's 403", out)
	}
}
