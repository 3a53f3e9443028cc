package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// testCA returns a PEM CA certificate.
func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestClientConfigFiles(t *testing.T) {
	ca := testCA(t)
	tests := []struct {
		name       string
		mirror     string
		ca         []byte
		registries []string
		// want maps a file's path to strings its content must hold.
		want map[string][]string
		// absent are paths that must not be written.
		absent []string
	}{
		{
			name: "https with a CA", mirror: "https://Mirror.Office.Example/", ca: ca,
			registries: []string{"ghcr.io", "registry-1.docker.io", "docker.io"},
			want: map[string][]string{
				"/etc/docker/daemon.json":                              {`"registry-mirrors": [`, `"https://mirror.office.example"`},
				"/etc/docker/certs.d/mirror.office.example/ca.crt":     {"BEGIN CERTIFICATE"},
				"/etc/containerd/certs.d/docker.io/hosts.toml":         {`server = "https://registry-1.docker.io"`, `[host."https://mirror.office.example"]`, `capabilities = ["pull", "resolve"]`, `ca = "regcache-ca.crt"`},
				"/etc/containerd/certs.d/ghcr.io/hosts.toml":           {`server = "https://ghcr.io"`, `ns=ghcr.io`},
				"/etc/containerd/certs.d/docker.io/regcache-ca.crt":    {"BEGIN CERTIFICATE"},
				"/etc/containerd/certs.d/ghcr.io/regcache-ca.crt":      {"BEGIN CERTIFICATE"},
				"/etc/containers/registries.conf.d/50-regcache.conf":   {`prefix = "docker.io"`, `location = "mirror.office.example/docker.io"`, `location = "mirror.office.example/ghcr.io"`},
				"/etc/containers/certs.d/mirror.office.example/ca.crt": {"BEGIN CERTIFICATE"},
			},
		},
		{
			name: "plain http with a port", mirror: "http://10.0.0.5:5000", registries: []string{"docker.io", "registry.example.com:5000"},
			want: map[string][]string{
				"/etc/docker/daemon.json":                                      {`"http://10.0.0.5:5000"`, `"insecure-registries": [`, `"10.0.0.5:5000"`},
				"/etc/containerd/certs.d/registry.example.com:5000/hosts.toml": {`server = "https://registry.example.com:5000"`, `[host."http://10.0.0.5:5000"]`},
				"/etc/containers/registries.conf.d/50-regcache.conf":           {`location = "10.0.0.5:5000/registry.example.com:5000"`, "insecure = true"},
			},
			absent: []string{"/etc/containerd/certs.d/docker.io/regcache-ca.crt", "/etc/docker/certs.d/10.0.0.5:5000/ca.crt"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files, err := clientConfigFiles(tc.mirror, tc.ca, tc.registries)
			if err != nil {
				t.Fatalf("clientConfigFiles: %v", err)
			}
			got := map[string]string{}
			for _, f := range files {
				if _, dup := got[f.Path]; dup {
					t.Errorf("%s written twice", f.Path)
				}
				got[f.Path] = f.Content
			}
			for p, wants := range tc.want {
				content, ok := got[p]
				if !ok {
					t.Errorf("no %s among %v", p, keys(got))
					continue
				}
				for _, w := range wants {
					if !strings.Contains(content, w) {
						t.Errorf("%s lacks %q:\n%s", p, w, content)
					}
				}
			}
			for _, p := range tc.absent {
				if _, ok := got[p]; ok {
					t.Errorf("%s written", p)
				}
			}
			var daemon map[string][]string
			if err := json.Unmarshal([]byte(got["/etc/docker/daemon.json"]), &daemon); err != nil {
				t.Errorf("daemon.json: %v", err)
			}
		})
	}
}

// keys lists a map's keys.
func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestClientConfigFilesRefuses(t *testing.T) {
	tests := []struct {
		name       string
		mirror     string
		ca         []byte
		registries []string
		want       string
	}{
		{"no scheme", "mirror.office.example", nil, []string{"docker.io"}, "scheme"},
		{"ftp", "ftp://mirror.office.example", nil, []string{"docker.io"}, "scheme"},
		{"a path", "https://mirror.office.example/v2", nil, []string{"docker.io"}, "root of its host"},
		{"credentials", "https://u:p@mirror.office.example", nil, []string{"docker.io"}, "root of its host"},
		{"no host", "https://", nil, []string{"docker.io"}, "no host"},
		{"bad port", "https://mirror:99999", nil, []string{"docker.io"}, "port"},
		{"no registry", "https://mirror", nil, nil, "no registry"},
		{"registry with a path", "https://mirror", nil, []string{"ghcr.io/owner"}, "registry host name"},
		{"registry with a query", "https://mirror", nil, []string{"ghcr.io?x"}, "registry host name"},
		{"not PEM", "https://mirror", []byte("hello"), []string{"docker.io"}, "PEM"},
		{"a key", "https://mirror", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), []string{"docker.io"}, "PEM"},
		{"a broken certificate", "https://mirror", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), []string{"docker.io"}, "CA file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := clientConfigFiles(tc.mirror, tc.ca, tc.registries)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("clientConfigFiles(%q, …, %q) = %v, want an error about %q", tc.mirror, tc.registries, err, tc.want)
			}
		})
	}
}
