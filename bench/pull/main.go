// Command pull pulls an image's blobs the way the Docker daemon does, and
// prints one JSON line: the wall time, the bytes received, the requests
// sent, and whether every blob arrived with its digest.
//
// It GETs the manifest by tag, then the config and the layers, at most
// -concurrency at once (the daemon's max-concurrent-downloads), each on a
// keep-alive connection of a shared transport. A blob whose body breaks
// is continued with a Range request from the last byte received, up to
// -tries attempts per blob; a 200 answer to a Range starts the blob over.
// The pause between attempts is -backoff (the daemon waits longer, which
// would only add the same constant to every server's time).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// summary is the JSON line printed.
type summary struct {
	OK          bool     `json:"ok"`
	Blobs       int      `json:"blobs"`
	WallSeconds float64  `json:"wall_s"`
	Bytes       int64    `json:"bytes"`
	Requests    int64    `json:"requests"`
	Errors      []string `json:"errors,omitempty"`
}

// manifestAccept is the Accept header of the manifest GET.
const manifestAccept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"

// puller pulls the blobs of one image.
type puller struct {
	registry, repo, token string
	tries                 int
	backoff               time.Duration
	client                *http.Client
	bytes, requests       atomic.Int64
}

// descriptor is a blob of a manifest.
type descriptor struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

func main() {
	registry := flag.String("registry", "", "registry base URL, e.g. http://127.0.0.1:5000")
	repo := flag.String("repo", "", "repository")
	tag := flag.String("tag", "latest", "tag")
	token := flag.String("token", "", "bearer token (not sent across a redirect to another host)")
	concurrency := flag.Int("concurrency", 3, "blobs downloaded at once")
	tries := flag.Int("tries", 5, "attempts per blob")
	backoff := flag.Duration("backoff", 100*time.Millisecond, "pause before another attempt")
	flag.Parse()
	if *registry == "" || *repo == "" {
		log.Fatal("pull: -registry and -repo are required")
	}
	p := &puller{
		registry: strings.TrimSuffix(*registry, "/"), repo: *repo, token: *token, tries: *tries, backoff: *backoff,
		client: &http.Client{Transport: &http.Transport{DisableCompression: true, ReadBufferSize: 256 << 10, MaxIdleConnsPerHost: *concurrency}},
	}
	s := p.pull(*tag, *concurrency)
	if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
		log.Fatal(err)
	}
	if !s.OK {
		os.Exit(1)
	}
}

// pull GETs the manifest of tag and every blob it names.
func (p *puller) pull(tag string, concurrency int) summary {
	start := time.Now()
	var s summary
	blobs, err := p.manifest(tag)
	if err != nil {
		s.Errors = []string{err.Error()}
		s.WallSeconds = time.Since(start).Seconds()
		return s
	}
	s.Blobs = len(blobs)
	errs := make([]error, len(blobs))
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	for i, b := range blobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = p.blob(b)
		})
	}
	wg.Wait()
	s.WallSeconds = time.Since(start).Seconds()
	s.Bytes, s.Requests = p.bytes.Load(), p.requests.Load()
	for _, err := range errs {
		if err != nil {
			s.Errors = append(s.Errors, err.Error())
		}
	}
	s.OK = len(s.Errors) == 0
	return s
}

// get sends a GET to the registry with the token and extra headers.
func (p *puller) get(path string, header ...string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, p.registry+path, nil)
	if err != nil {
		return nil, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	p.requests.Add(1)
	return p.client.Do(req)
}

// manifest GETs the manifest of tag and returns its config and layers.
func (p *puller) manifest(tag string) ([]descriptor, error) {
	resp, err := p.get("/v2/"+p.repo+"/manifests/"+tag, "Accept", manifestAccept)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manifest: status %s", resp.Status)
	}
	var m struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return append([]descriptor{m.Config}, m.Layers...), nil
}

// blob downloads one blob, continuing with Range after a break, and
// checks its digest and size.
func (p *puller) blob(d descriptor) error {
	h := sha256.New()
	var got int64
	var last error
	for try := range p.tries {
		if try > 0 {
			time.Sleep(p.backoff)
		}
		n, restarted, err := p.attempt(d.Digest, got, h)
		if restarted {
			got = 0
		}
		got += n
		if err == nil {
			if got != d.Size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.Digest {
				return fmt.Errorf("blob %s: %d bytes with another digest", d.Digest, got)
			}
			return nil
		}
		last = err
	}
	return fmt.Errorf("blob %s: %d of %d bytes after %d attempts: %w", d.Digest, got, d.Size, p.tries, last)
}

// attempt GETs a blob from offset (with Range when above 0) and hashes
// what arrives into h. It returns the bytes received, and whether the
// server answered the whole blob instead of the range (h is then reset and
// the bytes count from 0).
func (p *puller) attempt(digest string, offset int64, h hash.Hash) (int64, bool, error) {
	var header []string
	if offset > 0 {
		header = []string{"Range", "bytes=" + strconv.FormatInt(offset, 10) + "-"}
	}
	resp, err := p.get("/v2/"+p.repo+"/blobs/"+digest, header...)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	restarted := false
	switch {
	case resp.StatusCode == http.StatusOK:
		restarted = offset > 0
		if restarted {
			h.Reset()
		}
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(offset, 10)+"-") {
			return 0, false, fmt.Errorf("Content-Range %q for offset %d", resp.Header.Get("Content-Range"), offset)
		}
	default:
		return 0, false, fmt.Errorf("status %s", resp.Status)
	}
	n, err := io.Copy(h, resp.Body)
	p.bytes.Add(n)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = errors.New("short body")
	}
	return n, restarted, err
}
