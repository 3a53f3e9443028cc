package integration

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regcache/regcache/integration/hubtest"
)

// TestKillDuringFill kills Caddy with SIGKILL in the middle of a large
// fill. After a restart nothing verified is lost (a warm pull costs no
// upstream request), the interrupted download is kept in the cache's
// ingest area, and the next request for the blob continues it: one CDN
// GET of exactly the missing bytes, and the blob served whole and correct.
func TestKillDuringFill(t *testing.T) {
	const size = 64 << 20
	layer, _, err := hub.PushLargeBlobImage("library/crash-big", "1", size, 11)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := hub.PushImage("library/crash-small", "1", 2, 8192, false); err != nil {
		t.Fatal(err)
	}
	port, storage := freePort(t), filepath.Join(t.TempDir(), "cache")
	// One stream: the partial download is then the file's whole length.
	cfg := childCaddyfile(port, storage, "fill_connections 1")
	child := startChildCaddy(t, port, cfg)
	small := fmt.Sprintf("127.0.0.1:%d/crash-small:1", port)
	pullImage(t, small)

	hub.SetFault(hubtest.Fault{Kind: hubtest.FaultBandwidth, Target: hubtest.TargetBlob, BytesPerSecond: 8 << 20})
	t.Cleanup(func() { hub.SetFault(hubtest.Fault{}) })
	go func() {
		resp, err := http.Get(blobURL(port, "library/crash-big", layer))
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for ingestBytes(storage) < 4<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the fill never got going: %d bytes in ingest/", ingestBytes(storage))
		}
		time.Sleep(10 * time.Millisecond)
	}
	child.kill(t)
	left := ingestBytes(storage)
	if left == 0 || left >= size {
		t.Fatalf("after the kill ingest/ holds %d bytes, want a partial download", left)
	}
	hub.SetFault(hubtest.Fault{})

	startChildCaddy(t, port, cfg)
	checkCacheIntegrity(t, storage)
	hub.Counters.Reset()
	pullImage(t, small)
	wantCount(t, "warm pull after the restart: upstream requests", hub.Counters.Upstream(), 0)
	resp, err := http.Get(blobURL(port, "library/crash-big", layer))
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if err != nil || got != layer || n != size {
		t.Fatalf("the interrupted blob after the restart: %s, %d bytes, %v; want %s, %d bytes", got, n, err, layer, size)
	}
	wantCount(t, "continuing the interrupted blob: CDN GETs", hub.Counters.CDNGET.Load(), 1)
	wantCount(t, "continuing the interrupted blob: CDN bytes", hub.Counters.CDNBytes.Load(), size-left)
}

// TestKillAtRandomMoments pulls images round the clock through a cache
// much smaller than them, so that fills, evictions and metadata writes
// never stop, and kills Caddy at random moments. After every restart each
// cached file hashes to its name, the temporary area is empty, and every
// image still pulls correctly.
func TestKillAtRandomMoments(t *testing.T) {
	const images = 6
	var refs []string
	for i := range images {
		repo := fmt.Sprintf("library/churn%d", i)
		if _, _, err := hub.PushImage(repo, "1", 2, 200<<10, false); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, fmt.Sprintf("churn%d:1", i))
	}
	port, storage := freePort(t), filepath.Join(t.TempDir(), "cache")
	cfg := childCaddyfile(port, storage, "max_size 1MiB")
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 4 {
		child := startChildCaddy(t, port, cfg)
		checkCacheIntegrity(t, storage)
		var stop atomic.Bool
		var wg sync.WaitGroup
		var pulled atomic.Int64
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; !stop.Load(); i++ {
					if pullQuietly(fmt.Sprintf("127.0.0.1:%d/%s", port, refs[i%images])) == nil {
						pulled.Add(1)
					}
				}
			}()
		}
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		child.kill(t)
		stop.Store(true)
		wg.Wait()
		t.Logf("round %d: %d pulls before the kill", round, pulled.Load())
	}
	startChildCaddy(t, port, cfg)
	checkCacheIntegrity(t, storage)
	for _, ref := range refs {
		pullImage(t, fmt.Sprintf("127.0.0.1:%d/%s", port, ref))
	}
	// Eviction runs in the background: wait for it to settle.
	deadline := time.Now().Add(10 * time.Second)
	for {
		used := blobBytes(t, storage)
		if used <= 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache holds %d bytes, over its 1 MiB budget", used)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pullQuietly pulls and validates an image like pullImage, returning the
// error instead of failing the test (for pulls expected to be cut short).
func pullQuietly(image string) error {
	r, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	img, err := remote.Image(r, remote.WithTransport(tr))
	if err != nil {
		return err
	}
	return validate.Image(img)
}

// blobBytes sums the sizes of the cached files of storage.
func blobBytes(t *testing.T, storage string) int64 {
	t.Helper()
	var total int64
	err := filepath.Walk(filepath.Join(storage, "blobs"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
