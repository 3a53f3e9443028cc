package mirror

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/oci"
	"github.com/regcache/regcache/upstream"
)

// privateRegistry serves one manifest of a private repository to alice
// only (Basic), reporting a pull budget of remaining GETs on every
// answer; it records the user of each manifest request by method.
type privateRegistry struct {
	mu        sync.Mutex
	remaining int
	seen      []string // "METHOD user" of every manifest request
	body      []byte
}

func (p *privateRegistry) serve(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != "alice" || pass != "secret" {
		w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !strings.Contains(r.URL.Path, "/manifests/") {
		w.WriteHeader(http.StatusOK)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+user)
	if r.Method == http.MethodGet && p.remaining > 0 {
		p.remaining--
	}
	remaining := p.remaining
	p.mu.Unlock()
	w.Header().Set("Ratelimit-Limit", "100;w=21600")
	w.Header().Set("Ratelimit-Remaining", fmt.Sprintf("%d;w=21600", remaining))
	w.Header().Set("Content-Type", oci.MediaTypeOCIManifest)
	w.Header().Set(oci.ContentDigestHeader, digest.FromBytes(p.body).String())
	w.Header().Set("Content-Length", strconv.Itoa(len(p.body)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(p.body)
	}
}

// The HEAD that learns the pull budget once a hold expired is sent with
// the credentials of the client the manifest is fetched for: sent with
// the configured ones (none here), a private repository refuses it, and
// the client's pull fails although its own credentials may pull.
func TestBudgetProbeCarriesClientCredentials(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"mediaType":"` + oci.MediaTypeOCIManifest + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("0", 64) + `","size":2},"layers":[]}`)
	reg := &privateRegistry{remaining: 1, body: body}
	srv := httptest.NewServer(http.HandlerFunc(reg.serve))
	t.Cleanup(srv.Close)
	clk := newTestClock()
	store, rec := openCache(t, cache.Options{Dir: t.TempDir(), Now: clk.Now})
	c, err := upstream.New(upstream.Config{Name: DockerHub, Endpoints: []string{srv.URL}}, upstream.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	m, err := New(Config{Upstreams: []*upstream.Client{c}, Store: store, Records: rec, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	alice := newTarget(c, DockerHub, "library/private", "library/private").
		forClient(client{cred: clientCredentials{registry: DockerHub, username: "alice", password: "secret"}, authenticated: true})

	// The first GET spends the last pull of the budget: counted requests
	// are held back for the probe interval.
	if _, err := m.fetchManifest(t.Context(), alice, "1", digestAccept, ""); err != nil {
		t.Fatalf("first fetch: %v", err)
	}
	if b := c.Budget(); !b.Held {
		t.Fatalf("budget %+v, want held after the last pull", b)
	}
	clk.Add(upstream.DefaultBudgetProbe + time.Second)
	reg.mu.Lock()
	reg.remaining = 50 // the window refilled
	reg.mu.Unlock()
	if _, err := m.fetchManifest(t.Context(), alice, "2", digestAccept, ""); err != nil {
		t.Errorf("fetch after the hold expired: %v, want the manifest (the budget HEAD must carry alice's credentials)", err)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	want := []string{"GET alice", "HEAD alice", "GET alice"}
	if strings.Join(reg.seen, ",") != strings.Join(want, ",") {
		t.Errorf("manifest requests %q, want %q", reg.seen, want)
	}
}
