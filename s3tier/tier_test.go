package s3tier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/records"
	"github.com/regcache/regcache/s3tier"
	"github.com/regcache/regcache/s3tier/s3test"
)

// content returns n pseudo-random bytes and their digest.
func content(n int, seed byte) ([]byte, digest.Digest) {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed, byte(n), byte(n >> 8), byte(n >> 16)}).Read(b)
	return b, digest.FromBytes(b)
}

// newTier returns a tier on srv's bucket with small chunks and a short
// lease.
func newTier(t *testing.T, srv *s3test.Server) *s3tier.Tier {
	t.Helper()
	return newTierWith(t, srv, nil)
}

// newTierWith is newTier with the configuration changed by change.
func newTierWith(t *testing.T, srv *s3test.Server, change func(*s3tier.Config)) *s3tier.Tier {
	t.Helper()
	cfg := s3tier.Config{
		Endpoint: srv.Endpoint, Bucket: srv.Bucket, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey,
		Prefix: "test", PathStyle: true, ChunkSize: 1 << 20, LeaseTTL: 2 * time.Second, PollInterval: 20 * time.Millisecond,
	}
	if change != nil {
		change(&cfg)
	}
	tier, err := s3tier.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tier
}

// node is one node's content store and records, both shared through
// the tier, as the server wires them.
type node struct {
	*s3tier.Content
	*s3tier.Records
}

// newNode returns a node in a new directory backed by a tier on srv.
func newNode(t *testing.T, srv *s3test.Server) node {
	t.Helper()
	return nodeOf(t, newTier(t, srv))
}

// nodeOf returns a node in a new directory backed by tier.
func nodeOf(t *testing.T, tier *s3tier.Tier) node {
	t.Helper()
	rec := records.New()
	s, err := cache.Open(cache.Options{Dir: t.TempDir(), Sources: tier, Dependent: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return node{tier.Content(s), tier.Records(rec)}
}

// filler is what readAll reads from.
type filler interface {
	Fill(ctx context.Context, d digest.Digest, fetch cache.FetchFunc) (*cache.Reader, error)
}

// readAll reads a Fill of d from s with a bound on the wait.
func readAll(t *testing.T, s filler, d digest.Digest, fetch cache.FetchFunc) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := s.Fill(ctx, d, fetch)
	if err != nil {
		t.Fatalf("Fill(%s): %v", d, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the fill of %s: %v", d, err)
	}
	return b
}

// counted returns a fetch of body that counts its calls.
func counted(body []byte, calls *atomic.Int64) cache.FetchFunc {
	return func(context.Context, int64) (cache.Source, error) {
		calls.Add(1)
		return cache.Source{Body: io.NopCloser(bytes.NewReader(body)), Size: int64(len(body)), MediaType: "application/octet-stream"}, nil
	}
}

func TestSharedManifestsAndTags(t *testing.T) { forEachServer(t, testSharedManifestsAndTags) }

func testSharedManifestsAndTags(t *testing.T, srv *s3test.Server) {
	a, b := newNode(t, srv), newNode(t, srv)
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	d := digest.FromBytes(manifest)
	const mt = "application/vnd.oci.image.manifest.v1+json"
	if _, _, err := b.ReadAll(d, 1<<20); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("ReadAll of an unknown manifest = %v, want ErrNotFound", err)
	}
	if err := a.Put(d, mt, manifest); err != nil {
		t.Fatal(err)
	}
	got, obj, err := b.ReadAll(d, 1<<20)
	if err != nil || !bytes.Equal(got, manifest) || obj.MediaType != mt {
		t.Fatalf("node B reads %q (%+v), %v; want node A's manifest with its media type", got, obj, err)
	}
	if _, err := b.Inspect(d); err != nil {
		t.Errorf("node B did not keep the shared manifest on its disk: %v", err)
	}
	rec := cache.Tag{Digest: d, MediaType: mt, Size: int64(len(manifest)), FetchedAt: time.Unix(1_700_000_000, 0).UTC()}
	if err := a.SetTag("docker.io", "library/alpine", "3.19", rec); err != nil {
		t.Fatal(err)
	}
	gotTag, err := b.Tag("docker.io", "library/alpine", "3.19")
	if err != nil || gotTag.Digest != d || !gotTag.FetchedAt.Equal(rec.FetchedAt) {
		t.Fatalf("node B's tag = %+v, %v; want node A's record %+v", gotTag, err, rec)
	}
	newer := rec
	newer.FetchedAt = rec.FetchedAt.Add(time.Hour)
	if err := a.SetTag("docker.io", "library/alpine", "3.19", newer); err != nil {
		t.Fatal(err)
	}
	if r := b.RefreshTag("docker.io", "library/alpine", "3.19", gotTag); !r.FetchedAt.Equal(newer.FetchedAt) {
		t.Errorf("RefreshTag = fetched %v, want node A's newer %v", r.FetchedAt, newer.FetchedAt)
	}
	if _, err := b.Tag("docker.io", "library/alpine", "edge"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("unknown tag = %v, want ErrNotFound", err)
	}
}

func TestSharedLinksAndGrants(t *testing.T) { forEachServer(t, testSharedLinksAndGrants) }

func testSharedLinksAndGrants(t *testing.T, srv *s3test.Server) {
	a, b := newNode(t, srv), newNode(t, srv)
	_, d := content(100, 40)
	if b.Linked("docker.io", "library/alpine", d) {
		t.Fatal("a link nobody made is reported")
	}
	if err := a.Link("docker.io", "library/alpine", d); err != nil {
		t.Fatal(err)
	}
	if !b.Linked("docker.io", "library/alpine", d) {
		t.Error("node B does not see node A's link")
	}
	if b.Linked("docker.io", "library/other", d) {
		t.Error("node A's link counts for another repository")
	}
	at := time.Unix(1_700_000_000, 0).UTC()
	if err := a.SetGrant("docker.io", "library/alpine", cache.Grant{Identity: "id1", At: at}); err != nil {
		t.Fatal(err)
	}
	g, err := b.GrantOf("docker.io", "library/alpine")
	if err != nil || g.Identity != "id1" || !g.At.Equal(at) {
		t.Fatalf("node B's grant = %+v, %v; want node A's", g, err)
	}
	if err := a.SetGrant("docker.io", "library/alpine", cache.Grant{Identity: "id1", At: at.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if r := b.RefreshGrant("docker.io", "library/alpine", g); !r.At.Equal(at.Add(time.Hour)) {
		t.Errorf("RefreshGrant = %v, want node A's renewal %v", r.At, at.Add(time.Hour))
	}
	if err := a.DeleteGrant("docker.io", "library/alpine"); err != nil {
		t.Fatal(err)
	}
	if _, err := newNode(t, srv).GrantOf("docker.io", "library/alpine"); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("a new node's grant after node A deleted it = %v, want ErrNotFound", err)
	}
}

func TestSharedBlobServedByEveryNode(t *testing.T) { forEachServer(t, testSharedBlobServedByEveryNode) }

func testSharedBlobServedByEveryNode(t *testing.T, srv *s3test.Server) {
	a, b := newNode(t, srv), newNode(t, srv)
	body, d := content(3<<20+12345, 1)
	var calls atomic.Int64
	if got := readAll(t, a, d, counted(body, &calls)); !bytes.Equal(got, body) {
		t.Fatal("node A served other bytes")
	}
	// The upload follows the verdict; wait until the fill has finished.
	waitFor(t, func() bool { return len(srv.Keys("test/blobs/")) == 1 && len(srv.Keys("test/fills/")) == 0 })
	if obj, err := b.StatElsewhere(d); err != nil || obj.Size != int64(len(body)) || obj.MediaType != "application/octet-stream" {
		t.Errorf("StatElsewhere on node B = %+v, %v; want %d bytes of application/octet-stream", obj, err, len(body))
	}
	if got := readAll(t, b, d, counted(body, &calls)); !bytes.Equal(got, body) {
		t.Fatal("node B served other bytes")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream fetches = %d, want 1 (node B reads the bucket)", n)
	}
}

// forEachServer runs test against every kind of S3-compatible server.
func forEachServer(t *testing.T, test func(t *testing.T, srv *s3test.Server)) {
	for _, kind := range s3test.Kinds {
		t.Run(string(kind), func(t *testing.T) { test(t, s3test.StartKind(t, kind)) })
	}
}

// waitFor polls cond until it holds (the test's own deadline bounds it).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFollowerStreamsAsItLands starts one fill on node A whose upstream
// body is held after two chunks, and the same fill on node B: node B
// must receive those two chunks before the rest of the body exists, with
// or without an announced size, and when the content ends on a chunk
// boundary (the last chunk is then empty).
func TestFollowerStreamsAsItLands(t *testing.T) { forEachServer(t, testFollowerStreamsAsItLands) }

func testFollowerStreamsAsItLands(t *testing.T, srv *s3test.Server) {
	tests := []struct {
		name     string
		length   int
		announce bool
	}{
		{"announced size", 5<<20 + 777, true},
		{"unknown size", 5<<20 + 777, false},
		{"unknown size on a chunk boundary", 4 << 20, false},
		{"announced size on a chunk boundary", 4 << 20, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newNode(t, srv), newNode(t, srv)
			body, d := content(tc.length, byte(10+i))
			size := int64(-1)
			if tc.announce {
				size = int64(len(body))
			}
			pr, pw := io.Pipe()
			var calls atomic.Int64
			fetch := func(context.Context, int64) (cache.Source, error) {
				calls.Add(1)
				return cache.Source{Body: pr, Size: size, MediaType: "application/octet-stream"}, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ra, err := a.Fill(ctx, d, fetch)
			if err != nil {
				t.Fatal(err)
			}
			defer ra.Close()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(io.Discard, ra)
			}()
			if _, err := pw.Write(body[:2<<20]); err != nil {
				t.Fatal(err)
			}
			rb, err := b.Fill(ctx, d, counted(body, &calls))
			if err != nil {
				t.Fatal(err)
			}
			defer rb.Close()
			if rb.Size() != size {
				t.Errorf("node B's size = %d, want %d", rb.Size(), size)
			}
			head := make([]byte, 2<<20)
			if _, err := io.ReadFull(rb, head); err != nil {
				t.Fatalf("node B reading the first chunks while node A's download waits: %v", err)
			}
			if !bytes.Equal(head, body[:2<<20]) {
				t.Fatal("node B streamed other bytes")
			}
			if _, err := pw.Write(body[2<<20:]); err != nil {
				t.Fatal(err)
			}
			_ = pw.Close()
			rest, err := io.ReadAll(rb)
			if err != nil || !bytes.Equal(rest, body[2<<20:]) {
				t.Fatalf("node B's rest: %d bytes, %v", len(rest), err)
			}
			if err := rb.Wait(ctx); err != nil {
				t.Fatalf("node B's verdict: %v", err)
			}
			wg.Wait()
			if n := calls.Load(); n != 1 {
				t.Errorf("upstream fetches = %d, want 1", n)
			}
		})
	}
}

// TestTakeOverDeadFill leaves a lease and one chunk in the bucket as a
// node that died mid-fill would: a node asking for the digest follows the
// chunk, then takes the fill over once the lease expires, fetches the
// upstream once, and shares the verified content.
func TestTakeOverDeadFill(t *testing.T) { forEachServer(t, testTakeOverDeadFill) }

func testTakeOverDeadFill(t *testing.T, srv *s3test.Server) {
	b := newNode(t, srv)
	body, d := content(3<<20, 3)
	fills := "test/fills/sha256/" + d.Encoded() + "/"
	lease, _ := json.Marshal(map[string]any{"id": "dead", "node": "gone", "started": true, "size": len(body), "ttl_ms": 2000})
	put := func(key string, data []byte) {
		if _, err := srv.Client.PutObject(context.Background(), srv.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put(fills+"lease", lease)
	put(fills+"dead/00000000", body[:1<<20])
	var calls atomic.Int64
	if got := readAll(t, b, d, counted(body, &calls)); !bytes.Equal(got, body) {
		t.Fatal("the taken-over fill served other bytes")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream fetches = %d, want 1", n)
	}
	// The dead node's chunk goes with the lease that replaced it.
	waitFor(t, func() bool { return len(srv.Keys("test/blobs/")) == 1 && len(srv.Keys(fills)) == 0 })
}

// TestUnreachableStoreIsBypassedThenRetried stops the object store: the
// first failure marks the tier unavailable, and it is not asked again
// until the retry interval passed, after which it serves again.
func TestUnreachableStoreIsBypassedThenRetried(t *testing.T) {
	forEachServer(t, testUnreachableStoreIsBypassedThenRetried)
}

func testUnreachableStoreIsBypassedThenRetried(t *testing.T, srv *s3test.Server) {
	var now atomic.Int64
	now.Store(time.Unix(1_800_000_000, 0).UnixNano())
	tier, err := s3tier.New(s3tier.Config{
		Endpoint: srv.Endpoint, Bucket: srv.Bucket, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey,
		PathStyle: true, RetryInterval: 30 * time.Second, Now: func() time.Time { return time.Unix(0, now.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	ctx := context.Background()
	if err := tier.Put(ctx, cache.Object{Digest: d, MediaType: "application/json"}, data); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, _, err := tier.ReadAll(ctx, d, 1<<20); !errors.Is(err, s3tier.ErrUnavailable) {
		t.Fatalf("ReadAll with the store down = %v, want ErrUnavailable", err)
	}
	if tier.Available() || !tier.Stats().Unavailable {
		t.Fatal("the tier is still in use after the store failed")
	}
	srv.Restart()
	now.Add(int64(29 * time.Second))
	if _, _, err := tier.ReadAll(ctx, d, 1<<20); !errors.Is(err, s3tier.ErrUnavailable) {
		t.Errorf("ReadAll within the retry interval = %v, want ErrUnavailable without asking", err)
	}
	now.Add(int64(2 * time.Second))
	got, _, err := tier.ReadAll(ctx, d, 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll after the retry interval = %q, %v; want the stored manifest", got, err)
	}
	if !tier.Available() {
		t.Error("the tier is not in use again after a success")
	}
}

// TestFollowerGoesAloneWhenStoreDies stops the object store while node B
// follows node A's fill: node B fetches the upstream itself, skips what
// it already has, and its content still verifies; node A completes too.
func TestFollowerGoesAloneWhenStoreDies(t *testing.T) {
	forEachServer(t, testFollowerGoesAloneWhenStoreDies)
}

func testFollowerGoesAloneWhenStoreDies(t *testing.T, srv *s3test.Server) {
	a, b := newNode(t, srv), newNode(t, srv)
	body, d := content(4<<20+99, 30)
	pr, pw := io.Pipe()
	var calls atomic.Int64
	fetch := func(context.Context, int64) (cache.Source, error) {
		calls.Add(1)
		return cache.Source{Body: pr, Size: int64(len(body)), MediaType: "application/octet-stream"}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ra, err := a.Fill(ctx, d, fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	gotA := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(ra)
		gotA <- b
	}()
	if _, err := pw.Write(body[:2<<20]); err != nil {
		t.Fatal(err)
	}
	rb, err := b.Fill(ctx, d, counted(body, &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	head := make([]byte, 2<<20)
	if _, err := io.ReadFull(rb, head); err != nil {
		t.Fatalf("node B following node A: %v", err)
	}
	srv.Stop()
	go func() {
		_, _ = pw.Write(body[2<<20:])
		_ = pw.Close()
	}()
	rest, err := io.ReadAll(rb)
	if err != nil || !bytes.Equal(append(head, rest...), body) {
		t.Fatalf("node B after the store died: %d bytes, %v", len(head)+len(rest), err)
	}
	if err := rb.Wait(ctx); err != nil {
		t.Fatalf("node B's verdict: %v", err)
	}
	if got := <-gotA; !bytes.Equal(got, body) {
		t.Errorf("node A served %d other bytes", len(got))
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("upstream fetches = %d, want 2 (node A's, node B's own)", n)
	}
}

// TestRefusingStoreIsBypassed configures a wrong secret key or a missing
// bucket: the store's refusal bypasses the tier like an outage, instead
// of costing every request a round trip.
func TestRefusingStoreIsBypassed(t *testing.T) { forEachServer(t, testRefusingStoreIsBypassed) }

func testRefusingStoreIsBypassed(t *testing.T, srv *s3test.Server) {
	tests := []struct {
		name, bucket, secret string
	}{
		{"wrong secret key", srv.Bucket, "not-the-secret"},
		{"missing bucket", "missing", s3test.SecretKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tier, err := s3tier.New(s3tier.Config{
				Endpoint: srv.Endpoint, Bucket: tc.bucket, AccessKey: s3test.AccessKey, SecretKey: tc.secret, PathStyle: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = tier.Tag(context.Background(), "docker.io", "library/alpine", "3.19")
			if !errors.Is(err, s3tier.ErrUnavailable) || tier.Available() {
				t.Errorf("Tag = %v, available %v; want ErrUnavailable and the tier bypassed", err, tier.Available())
			}
			if err := tier.Probe(context.Background()); err == nil {
				t.Error("Probe found nothing wrong")
			}
		})
	}
}
