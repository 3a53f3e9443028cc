package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/regcache/regcache/integration/hubtest"
)

// soakImage is one image of the soak and what its parts must hash to.
type soakImage struct {
	tag      string
	manifest string   // digest
	blobs    []string // config and layer digests
}

// soakCounts are the outcomes of the soak's requests.
type soakCounts struct {
	good, failed, broken, wrong atomic.Int64
	wrongDetail                 atomic.Value
}

// fetch GETs path and checks a 200 body against want (the digest it must
// hash to). A status other than 200 is a failure, a body that breaks off a
// broken response; a clean 200 with other bytes is wrong.
func (c *soakCounts) fetch(ctx context.Context, client *http.Client, url, want string, header ...string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		c.broken.Add(1)
		return
	}
	defer resp.Body.Close()
	h := sha256.New()
	_, err = io.Copy(h, resp.Body)
	switch {
	case resp.StatusCode != http.StatusOK:
		c.failed.Add(1)
	case err != nil:
		c.broken.Add(1)
	case "sha256:"+hex.EncodeToString(h.Sum(nil)) != want:
		c.wrong.Add(1)
		c.wrongDetail.Store(fmt.Sprintf("%s: 200 with content hashing to sha256:%x, want %s", url, h.Sum(nil), want))
	case resp.Header.Get("Docker-Content-Digest") != "" && resp.Header.Get("Docker-Content-Digest") != want:
		c.wrong.Add(1)
		c.wrongDetail.Store(fmt.Sprintf("%s: Docker-Content-Digest %s, want %s", url, resp.Header.Get("Docker-Content-Digest"), want))
	default:
		c.good.Add(1)
	}
}

// openFiles counts this process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("listing open files: %v", err)
	}
	return len(entries)
}

// quiet samples the goroutines and open files until two samples in a row
// agree (bounded by a deadline, not asserted on), or until they are within
// slack of want when want is positive, and returns the last sample.
func quiet(t *testing.T, wantGoroutines, wantFiles, slack int) (int, int) {
	t.Helper()
	g, f := -1, -1
	for deadline := time.Now().Add(2 * time.Minute); ; {
		runtime.GC()
		ng, nf := runtime.NumGoroutine(), openFiles(t)
		within := wantGoroutines > 0 && ng <= wantGoroutines+slack && nf <= wantFiles+slack
		if within || (ng == g && nf == f) || time.Now().After(deadline) {
			return ng, nf
		}
		g, f = ng, nf
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSoakFlakyUpstream: many clients pull through regcache for a bounded
// number of rounds while the upstream cuts, resets, corrupts and refuses
// answers at random, with tags revalidated on every request and a cache
// budget that keeps evicting, so that fills keep running. No client ever
// gets a clean 200 with a wrong body; most requests succeed; and once the
// mirror is stopped, the goroutines and open files are back where they
// were.
func TestSoakFlakyUpstream(t *testing.T) {
	const (
		images  = 12
		clients = 16
	)
	rounds := 140 // about 15 s here, and a few hundred fills through faults
	if raceDetector {
		rounds = 40
	}
	var imgs []soakImage
	for i := range images {
		img, want, err := hub.PushImage("library/soak", fmt.Sprintf("t%d", i), 2, 192<<10, i%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		si := soakImage{tag: fmt.Sprintf("t%d", i), manifest: want}
		cfg, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		si.blobs = append(si.blobs, cfg.String())
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			si.blobs = append(si.blobs, d.String())
		}
		imgs = append(imgs, si)
	}
	// The baseline: after a mirror of this process has run and stopped,
	// so that what Caddy keeps for the process is counted in.
	warm := startMirror(t, siteOptions{})
	pullImage(t, warm.Host+"/soak:t0")
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	baseGoroutines, baseFiles := quiet(t, 0, 0, 0)

	m := startMirror(t, siteOptions{block: "tag_ttl 1ns\n\t\tnegative_ttl off\n\t\tmax_size 2MiB\n\t\tstall_timeout 5s"})
	var counts soakCounts
	accept := "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
	done := make(chan struct{})
	var injector sync.WaitGroup
	injector.Go(func() {
		kinds := []hubtest.FaultKind{hubtest.FaultTruncate, hubtest.FaultCorrupt, hubtest.FaultNoBody, hubtest.FaultRefuse, hubtest.Fault503}
		targets := []string{hubtest.TargetManifest, hubtest.TargetBlob, hubtest.TargetAll}
		rng := rand.New(rand.NewPCG(14, 14))
		for {
			select {
			case <-done:
				hub.SetFault(hubtest.Fault{})
				return
			case <-time.After(5 * time.Millisecond):
			}
			hub.SetFault(hubtest.Fault{Kind: kinds[rng.IntN(len(kinds))], Target: targets[rng.IntN(len(targets))], Count: 1 + rng.IntN(3)})
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client := &http.Client{Transport: tr}
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for range rounds {
				img := imgs[rng.IntN(len(imgs))]
				counts.fetch(ctx, client, m.URL+"/v2/soak/manifests/"+img.tag, img.manifest, "Accept", accept)
				counts.fetch(ctx, client, m.URL+"/v2/soak/manifests/"+img.manifest, img.manifest, "Accept", accept)
				for _, b := range img.blobs {
					counts.fetch(ctx, client, m.URL+"/v2/soak/blobs/"+b, b)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	injector.Wait()
	total := int64(clients * rounds * 5)
	t.Logf("soak of %s", time.Since(start).Round(time.Millisecond))
	t.Logf("%d requests: %d good, %d failed with an error status, %d broken off, %d wrong; %d faults injected",
		total, counts.good.Load(), counts.failed.Load(), counts.broken.Load(), counts.wrong.Load(), hub.Counters.Faults.Load())
	if n := counts.wrong.Load(); n != 0 {
		t.Errorf("%d clean 200 answers with a wrong body, e.g. %v", n, counts.wrongDetail.Load())
	}
	if got := counts.good.Load() + counts.failed.Load() + counts.broken.Load() + counts.wrong.Load(); got != total {
		t.Errorf("%d outcomes for %d requests", got, total)
	}
	if counts.good.Load() < total/2 {
		t.Errorf("only %d of %d requests succeeded", counts.good.Load(), total)
	}

	tr.CloseIdleConnections()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	const slack = 8
	g, f := quiet(t, baseGoroutines, baseFiles, slack)
	t.Logf("goroutines %d -> %d, open files %d -> %d", baseGoroutines, g, baseFiles, f)
	if g > baseGoroutines+slack || f > baseFiles+slack {
		buf := make([]byte, 1<<20)
		t.Errorf("after the soak: %d goroutines (baseline %d), %d open files (baseline %d)\n%s",
			g, baseGoroutines, f, baseFiles, buf[:runtime.Stack(buf, true)])
	}
}
