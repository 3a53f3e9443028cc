package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestTLSInternalServesPull runs the mirror as an HTTPS site with Caddy's
// internal CA (nothing installed into the system trust store) and pulls
// through it with a client that trusts the CA's root, as an office
// distributes it to its Docker hosts (/etc/docker/certs.d/<host>/ca.crt).
// A client without the root is refused by TLS.
func TestTLSInternalServesPull(t *testing.T) {
	_, want, err := hub.PushImage("library/tlsimage", "1", 2, 4096, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := freePort(t)
	data := filepath.Join(dir, "caddy-data")
	loadCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
	storage file_system %s
	log {
		level ERROR
	}
}

https://localhost:%d {
	bind 127.0.0.1
	tls internal
	registry_cache {
		storage %s
		upstream docker.io %s
	}
}
`, data, port, filepath.Join(dir, "cache"), hub.URL))
	host := fmt.Sprintf("localhost:%d", port)
	_, pool := waitInternalTLS(t, data, host)
	trusting := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	resp, err := (&http.Client{Transport: trusting}).Get("https://" + host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("HTTPS served %s, want HTTP/2", resp.Proto)
	}
	ref, err := name.ParseReference(host + "/tlsimage:1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithTransport(httpsOnly{trusting}))
	if err != nil {
		t.Fatalf("pulling over HTTPS: %v", err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validating: %v", err)
	}
	if got, _ := img.Digest(); got.String() != want {
		t.Errorf("digest %s, want %s", got, want)
	}
	// Without the root, the mirror's certificate is not trusted.
	if _, err := remote.Image(ref, remote.WithTransport(httpsOnly{&http.Transport{}})); err == nil {
		t.Error("a client without the internal root pulled over HTTPS")
	}
}

// httpsOnly refuses plain-HTTP requests, which go-containerregistry would
// otherwise try for a localhost registry after HTTPS failed.
type httpsOnly struct{ base http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing plain HTTP to %s", r.URL.Host)
	}
	return h.base.RoundTrip(r)
}

// waitInternalTLS waits until the site at host serves the registry API
// over HTTPS with a certificate of Caddy's internal CA, whose data
// directory is data, and returns the path of the CA's root and a pool
// holding it. Caddy issues the certificate in the background after a load.
func waitInternalTLS(t *testing.T, data, host string) (string, *x509.CertPool) {
	t.Helper()
	root := filepath.Join(data, "pki", "authorities", "local", "root.crt")
	pool := x509.NewCertPool()
	trusting := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer trusting.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pem, err := os.ReadFile(root); err == nil && pool.AppendCertsFromPEM(pem) {
			resp, err := (&http.Client{Transport: trusting}).Get("https://" + host + "/v2/")
			if err == nil {
				resp.Body.Close()
				if resp.Header.Get("Docker-Distribution-API-Version") == "registry/2.0" {
					return root, pool
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the HTTPS site never served /v2/ with a certificate from the internal CA")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
