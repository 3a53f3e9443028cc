package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// blockingServer answers with half of a 100-byte body, then blocks until
// the test ends or the client goes away.
func blockingServer(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, strings.Repeat("x", 50))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv
}

func TestStalledBody(t *testing.T) {
	srv := blockingServer(t)
	c := mustNew(t, Config{Name: "x", Endpoints: []string{srv.URL}}, Options{StallTimeout: 50 * time.Millisecond})
	resp, err := c.Do(t.Context(), Request{Method: http.MethodGet, Repository: "a", Path: "blobs/sha256:aa"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("reading a stalled body: %v, want ErrStalled", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("the stall error %v wraps context.Canceled: callers would take it for their own cancellation", err)
	}
	if len(got) != 50 {
		t.Errorf("read %d bytes before the stall, want 50", len(got))
	}
	if _, err := resp.Body.Read(make([]byte, 1)); !errors.Is(err, ErrStalled) {
		t.Errorf("read after the stall: %v, want ErrStalled", err)
	}
}

func TestCancelAbortsBody(t *testing.T) {
	srv := blockingServer(t)
	c := mustNew(t, Config{Name: "x", Endpoints: []string{srv.URL}}, Options{StallTimeout: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Repository: "a", Path: "blobs/sha256:aa"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 50)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrStalled) {
		t.Errorf("reading after cancel: %v, want context.Canceled", err)
	}
}

func TestCancelledBeforeAnswer(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	defer srv.Close()
	other := fakeEndpoint(t, "ok")
	c := mustNew(t, Config{Name: "x", Endpoints: []string{srv.URL, other}}, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, err := get(t, c, ctx, "manifests/a")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if h := c.Health(); !h[0].Healthy {
		t.Errorf("a cancelled request marked the endpoint failed: %+v", h[0])
	}
}

func TestBodyBytesUntouched(t *testing.T) {
	// the upstream's gzip encoding is passed through, never decoded
	const raw = "\x1f\x8b\x08\x00not-really-gzip"
	gotAE := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAE <- r.Header.Get("Accept-Encoding")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = io.WriteString(w, raw)
	}))
	defer srv.Close()
	c := mustNew(t, Config{Name: "x", Endpoints: []string{srv.URL}}, Options{})
	body, err := get(t, c, t.Context(), "blobs/sha256:aa")
	if err != nil || body != raw {
		t.Errorf("body %q, %v; want the upstream's bytes", body, err)
	}
	if ae := <-gotAE; ae != "" {
		t.Errorf("Accept-Encoding %q was added", ae)
	}
}
