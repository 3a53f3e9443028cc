package s3tier_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/s3tier"
	"github.com/regcache/regcache/s3tier/s3test"
)

// TestBadSharedCopyIsRemoved damages the shared copy of a blob in the
// bucket: the node that reads it fails the fill (no clean end of a bad
// body), removes the copy, and the next fill of any node fetches the
// upstream and shares the content again.
func TestBadSharedCopyIsRemoved(t *testing.T) { forEachServer(t, testBadSharedCopyIsRemoved) }

func testBadSharedCopyIsRemoved(t *testing.T, srv *s3test.Server) {
	body, d := content(2<<20+99, 41)
	bad := bytes.Clone(body)
	bad[len(bad)/2] ^= 0xff
	key := "test/blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
	if _, err := srv.Client.PutObject(context.Background(), srv.Bucket, key, bytes.NewReader(bad), int64(len(bad)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		t.Fatal(err)
	}
	a, b := newNode(t, srv), newNode(t, srv)
	var calls atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := a.Fill(ctx, d, counted(body, &calls))
	if err == nil {
		_, err = io.ReadAll(r)
		if err == nil {
			err = r.Wait(ctx)
		}
		_ = r.Close()
	}
	if !errors.Is(err, cache.ErrDigestMismatch) {
		t.Fatalf("fill from the damaged copy: %v, want a digest mismatch", err)
	}
	waitFor(t, func() bool { return len(srv.Keys("test/blobs/")) == 0 })
	if got := readAll(t, b, d, counted(body, &calls)); !bytes.Equal(got, body) {
		t.Fatal("node B served other bytes after the repair")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream fetches = %d, want 1 (after the damaged copy was removed)", n)
	}
	waitFor(t, func() bool { return len(srv.Keys("test/blobs/")) == 1 })
}

// TestFollowerUsesTheHolderChunkSize follows a fill published in 1 MiB
// chunks from a node configured with 3 MiB chunks: the follower reads the
// holder's chunk size from the lease.
func TestFollowerUsesTheHolderChunkSize(t *testing.T) {
	forEachServer(t, testFollowerUsesTheHolderChunkSize)
}

func testFollowerUsesTheHolderChunkSize(t *testing.T, srv *s3test.Server) {
	a := newNode(t, srv) // 1 MiB chunks
	b := nodeOf(t, newTierWith(t, srv, func(c *s3tier.Config) { c.ChunkSize = 3 << 20 }))
	body, d := content(5<<20+321, 42)
	pr, pw := io.Pipe()
	var calls atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ra, err := a.Fill(ctx, d, func(context.Context, int64) (cache.Source, error) {
		calls.Add(1)
		return cache.Source{Body: pr, Size: int64(len(body)), MediaType: "application/octet-stream"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.Discard, ra)
	}()
	// Closed only once its reader stopped: a Reader is not closed under a
	// Read in progress.
	defer func() {
		cancel()
		<-copied
		_ = ra.Close()
	}()
	if _, err := pw.Write(body[:2<<20]); err != nil {
		t.Fatal(err)
	}
	rb, err := b.Fill(ctx, d, counted(body, &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	go func() {
		_, _ = pw.Write(body[2<<20:])
		_ = pw.Close()
	}()
	got, err := io.ReadAll(rb)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("node B read %d bytes, %v; want the %d bytes of node A's fill", len(got), err, len(body))
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("upstream fetches = %d, want 1", n)
	}
}

// TestStalledStoreReadFallsBack freezes the object store while a node
// reads a shared copy: the read that gets no byte fails after the stall
// bound, and the fill completes from the upstream instead of hanging.
func TestStalledStoreReadFallsBack(t *testing.T) { forEachServer(t, testStalledStoreReadFallsBack) }

func testStalledStoreReadFallsBack(t *testing.T, srv *s3test.Server) {
	body, d := content(24<<20+5, 43)
	key := "test/blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
	if _, err := srv.Client.PutObject(context.Background(), srv.Bucket, key, bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"}); err != nil {
		t.Fatal(err)
	}
	n := nodeOf(t, newTierWith(t, srv, func(c *s3tier.Config) { c.Timeout = 100 * time.Millisecond }))
	var calls atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := n.Fill(ctx, d, counted(body, &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	defer srv.Thaw()
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(append(head, rest...), body) {
		t.Fatalf("read %d bytes after the store froze, %v; want the rest of the %d", len(rest), err, len(body))
	}
	if err := r.Wait(ctx); err != nil {
		t.Fatalf("verdict: %v", err)
	}
	if c := calls.Load(); c != 1 {
		t.Errorf("upstream fetches = %d, want 1 (the fallback)", c)
	}
}
