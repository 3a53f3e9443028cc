// Command upstream runs the Docker-Hub-like upstream of the benchmarks on
// loopback (the hubtest front: token realm, 307 blob redirects to a CDN
// listener), seeded with one large random blob, a small image and the
// image of the bad-link scenarios (-layers layers of -layer-size bytes).
// It writes what the benchmarks need to know as JSON to -state, serves its
// counters and the faults of a bad link on a control listener, and runs
// until interrupted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/regcache/regcache/integration/hubtest"
)

// Repositories of the seeded content.
const (
	bigRepo     = "bench/big"
	smallRepo   = "bench/small"
	badlinkRepo = "bench/badlink"
)

// state is what the benchmark script reads from -state.
type state struct {
	Front         string `json:"front"`
	JoinedFront   string `json:"joined_front"`
	Realm         string `json:"realm"`
	Service       string `json:"service"`
	CDN           string `json:"cdn"`
	CDNPort       string `json:"cdn_port"`
	Control       string `json:"control"`
	BigRepo       string `json:"big_repo"`
	BigDigest     string `json:"big_digest"`
	BigSize       int64  `json:"big_size"`
	SmallRepo     string `json:"small_repo"`
	SmallManifest string `json:"small_manifest"`
	SmallType     string `json:"small_type"`
	Token         string `json:"token"`
	// The image of the bad-link scenarios: its repository, tag, manifest
	// digest, and the total size of its blobs (config and layers).
	BadlinkRepo     string `json:"badlink_repo"`
	BadlinkTag      string `json:"badlink_tag"`
	BadlinkManifest string `json:"badlink_manifest"`
	BadlinkBytes    int64  `json:"badlink_bytes"`
}

func main() {
	size := flag.Int64("size", 512<<20, "size of the large blob in bytes")
	statePath := flag.String("state", "upstream.json", "where to write the state as JSON")
	static := flag.String("static", "", "if set, also write the large blob under this directory at its /v2/ path, for a static file server")
	layers := flag.Int("layers", 4, "layers of the bad-link image")
	layerSize := flag.Int64("layer-size", 100<<20, "size of each layer of the bad-link image in bytes")
	flag.Parse()
	if err := run(*size, *statePath, *static, *layers, *layerSize); err != nil {
		log.Fatal(err)
	}
}

func run(size int64, statePath, static string, layers int, layerSize int64) error {
	hub, err := hubtest.Start(hubtest.Options{TokenLifetime: 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("starting the upstream: %w", err)
	}
	defer hub.Close()
	layer, _, err := hub.PushLargeBlobImage(bigRepo, "latest", size, 1)
	if err != nil {
		return fmt.Errorf("seeding the large blob: %w", err)
	}
	_, small, err := hub.PushImage(smallRepo, "latest", 1, 1024, true)
	if err != nil {
		return fmt.Errorf("seeding the small image: %w", err)
	}
	if static != "" {
		if err := writeStatic(static, layer, size); err != nil {
			return err
		}
	}
	seeds := make([]int64, layers)
	for i := range seeds {
		seeds[i] = int64(100 + i)
	}
	_, badlink, err := hub.PushSeededImage(badlinkRepo, "latest", layerSize, seeds...)
	if err != nil {
		return fmt.Errorf("seeding the bad-link image: %w", err)
	}
	badlinkBytes, err := imageBytes(hub.RegistryURL, badlinkRepo, badlink)
	if err != nil {
		return err
	}
	token, err := fetchToken(hub.RealmURL, hub.Service, bigRepo, smallRepo, badlinkRepo)
	if err != nil {
		return err
	}
	cdn, err := url.Parse(hub.CDNURL)
	if err != nil {
		return fmt.Errorf("parsing the CDN URL: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for control: %w", err)
	}
	srv := &http.Server{Handler: control(hub), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	joined, joinedURL, err := serveJoined(hub)
	if err != nil {
		return err
	}
	defer joined.Close()
	st := state{
		Front: hub.URL, JoinedFront: joinedURL, Realm: hub.RealmURL, Service: hub.Service, CDN: hub.CDNURL, CDNPort: cdn.Port(),
		Control: "http://" + l.Addr().String(), BigRepo: bigRepo, BigDigest: layer, BigSize: size,
		SmallRepo: smallRepo, SmallManifest: small, SmallType: "application/vnd.oci.image.manifest.v1+json",
		Token: token, BadlinkRepo: badlinkRepo, BadlinkTag: "latest", BadlinkManifest: badlink, BadlinkBytes: badlinkBytes,
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the state: %w", err)
	}
	// Written last and renamed into place: its presence means ready.
	if err := os.WriteFile(statePath+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("writing the state: %w", err)
	}
	if err := os.Rename(statePath+".tmp", statePath); err != nil {
		return fmt.Errorf("writing the state: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// writeStatic writes the large blob to dir/v2/<repo>/blobs/<digest>.
func writeStatic(dir, layer string, size int64) error {
	path := filepath.Join(dir, "v2", bigRepo, "blobs", layer)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing the static blob: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the static blob: %w", err)
	}
	if _, err := io.Copy(f, hubtest.SeededBlob(size, 1)); err != nil {
		_ = f.Close()
		return fmt.Errorf("writing the static blob: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the static blob: %w", err)
	}
	return nil
}

// fetchToken gets an anonymous pull token for repos from the realm, for
// the peers that cannot do the token dance themselves (nginx) and for
// downloads straight from the upstream.
func fetchToken(realm, service string, repos ...string) (string, error) {
	q := url.Values{"service": {service}}
	for _, r := range repos {
		q.Add("scope", "repository:"+r+":pull")
	}
	resp, err := http.Get(realm + "?" + q.Encode())
	if err != nil {
		return "", fmt.Errorf("fetching a token: %w", err)
	}
	defer resp.Body.Close()
	var answer struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return "", fmt.Errorf("decoding the token answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || answer.Token == "" {
		return "", errors.New("the realm gave no token: status " + resp.Status)
	}
	return answer.Token, nil
}

// control serves GET /counters (the hub's counters as JSON, with
// cdn_body_start in Unix nanoseconds, and every non-zero counter in
// "all"), POST /reset, and POST /fault, whose JSON body sets the faults
// of the CDN's blob answers: {"kind": "cut", "after": <bytes>} cuts every
// transfer after that many bytes, {"kind": "conn-bandwidth",
// "bytes_per_second": <n>} caps every connection, {"kind": "none"}
// clears them.
func control(hub *hubtest.Hub) http.Handler {
	c := hub.Counters
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counters", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]any{
			"all":     c.String(),
			"cdn_get": c.CDNGET.Load(), "cdn_bytes": c.CDNBytes.Load(), "cdn_body_start": c.CDNBodyStart.Load(),
			"manifest_get": c.ManifestGET.Load(), "blob_get": c.BlobGET.Load(), "front_all": c.FrontAll.Load(),
			"tokens": c.Tokens.Load(), "upstream": c.Upstream(),
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		c.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /fault", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Kind           string `json:"kind"`
			After          int64  `json:"after"`
			BytesPerSecond int64  `json:"bytes_per_second"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "decoding the fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		f := hubtest.Fault{Target: hubtest.TargetBlob, After: req.After, BytesPerSecond: req.BytesPerSecond}
		switch req.Kind {
		case "none":
			f = hubtest.Fault{}
		case "cut":
			f.Kind = hubtest.FaultCut
		case "conn-bandwidth":
			f.Kind = hubtest.FaultConnBandwidth
		default:
			http.Error(w, "unknown fault kind "+req.Kind+": cut, conn-bandwidth or none", http.StatusBadRequest)
			return
		}
		hub.SetFault(f)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "GET /counters, POST /reset or POST /fault, not "+strings.TrimPrefix(r.URL.Path, "/"), http.StatusNotFound)
	})
	return mux
}

// imageBytes returns the total size of the config and layers of the image
// manifest digest of repo, read from the registry at registryURL.
func imageBytes(registryURL, repo, digest string) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, registryURL+"/v2/"+repo+"/manifests/"+digest, nil)
	if err != nil {
		return 0, fmt.Errorf("reading the bad-link manifest: %w", err)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the bad-link manifest: %w", err)
	}
	defer resp.Body.Close()
	var m struct {
		Config struct {
			Size int64 `json:"size"`
		} `json:"config"`
		Layers []struct {
			Size int64 `json:"size"`
		} `json:"layers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return 0, fmt.Errorf("decoding the bad-link manifest: %w", err)
	}
	total := m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, nil
}

// serveJoined serves the front and the token realm on one listener, the
// realm at /token, rewriting the challenges to name it. The distribution
// registry's proxy fetches tokens only from a realm on its upstream's own
// host and port, or from a public host under the same domain, so it
// cannot follow the hub's challenge to the realm's separate loopback
// port. Blob GETs still redirect to the CDN, and the hub counts every
// request as usual.
// It returns the server and its URL.
func serveJoined(hub *hubtest.Hub) (*http.Server, string, error) {
	front, err := url.Parse(hub.URL)
	if err != nil {
		return nil, "", fmt.Errorf("parsing the front URL: %w", err)
	}
	realm, err := url.Parse(hub.RealmURL)
	if err != nil {
		return nil, "", fmt.Errorf("parsing the realm URL: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("listening for the joined front: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: time.Minute}
	base := "http://" + l.Addr().String()
	self := base + "/token"
	toFront := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(front) },
		ModifyResponse: func(resp *http.Response) error {
			if c := resp.Header.Get("Www-Authenticate"); c != "" {
				resp.Header.Set("Www-Authenticate", strings.Replace(c, hub.RealmURL, self, 1))
			}
			return nil
		},
	}
	toRealm := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(&url.URL{Scheme: realm.Scheme, Host: realm.Host})
	}}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			toRealm.ServeHTTP(w, r)
			return
		}
		toFront.ServeHTTP(w, r)
	})
	go func() { _ = srv.Serve(l) }()
	return srv, base, nil
}
