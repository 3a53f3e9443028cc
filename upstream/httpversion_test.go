package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDefaultTransportSpeaksHTTP1 checks that the default transport asks
// an HTTPS server that offers HTTP/2 for HTTP/1.1: each request of a
// download split into ranges then has a connection of its own.
func TestDefaultTransportSpeaksHTTP1(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tests := []struct {
		name string
		tr   func() *http.Transport
		want string
	}{
		{"the server offers HTTP/2 to a client that asks", func() *http.Transport {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
			tr.ForceAttemptHTTP2 = true
			return tr
		}, "HTTP/2.0"},
		{"the default transport", func() *http.Transport {
			tr := defaultTransport(0, 0, nil)
			tr.DialContext, tr.Proxy = (&net.Dialer{}).DialContext, nil
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
			return tr
		}, "HTTP/1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.tr()
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Proto != tc.want || string(body) != tc.want {
				t.Errorf("response %s (the server saw %s), want %s", resp.Proto, body, tc.want)
			}
		})
	}
}
