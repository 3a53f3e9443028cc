package mirror

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
)

// flipStored flips one bit in the middle of d's stored file.
func flipStored(t *testing.T, store *cache.Store, d digest.Digest) {
	t.Helper()
	path := filepath.Join(store.Dir(), "blobs", string(d.Algorithm()), d.Encoded())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestServeCachedNeverEndsCleanOnCorruptBytes(t *testing.T) {
	blob := bytes.Repeat([]byte("regcache at rest "), 40_000) // 680 KB, several buffers
	d := digest.FromBytes(blob)
	tests := []struct {
		name string
		// verified: the blob was hashed since the cache opened.
		verified bool
		// damage happens before the request; condemn, after the reader
		// opened the file and before it sends (a scrub's finding).
		damage, condemn bool
		// truncate cuts the stored file to half its size.
		truncate     bool
		wantStatus   int
		wantClean    bool // the body ends cleanly with the blob's bytes
		wantStored   bool
		wantVerified bool
	}{
		{name: "first read, intact", wantStatus: 200, wantClean: true, wantStored: true, wantVerified: true},
		{name: "first read, flipped", damage: true, wantStatus: 200},
		{name: "verified, intact", verified: true, wantStatus: 200, wantClean: true, wantStored: true, wantVerified: true},
		{name: "verified, condemned while open", verified: true, damage: true, condemn: true, wantStatus: 200},
		{name: "verified, truncated", verified: true, truncate: true, wantStatus: 200},
		{name: "first read, truncated", truncate: true, wantStatus: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMirror(t, "", "docker.io")
			if err := m.store.Put(d, blobContentType, blob); err != nil {
				t.Fatal(err)
			}
			if !tc.verified {
				// As after a restart: the bytes on disk were not hashed
				// since the cache opened.
				reopenStore(t, m)
			}
			if tc.damage {
				flipStored(t, testStore(t, m), d)
			}
			if tc.truncate {
				path := filepath.Join(testStore(t, m).Dir(), "blobs", string(d.Algorithm()), d.Encoded())
				if err := os.Truncate(path, int64(len(blob)/2)); err != nil {
					t.Fatal(err)
				}
			}
			srv := cachedBlobServer(t, m, d, tc.condemn)
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			clean := rerr == nil && bytes.Equal(body, blob)
			if clean != tc.wantClean {
				t.Errorf("clean end with the right bytes: %v (read error %v, %d bytes), want %v", clean, rerr, len(body), tc.wantClean)
			}
			if !tc.wantClean && rerr == nil {
				t.Errorf("the response ended cleanly after %d bytes of corrupt content", len(body))
			}
			if _, err := m.store.Stat(d); (err == nil) != tc.wantStored {
				t.Errorf("stored after the response: %v, want %v", err, tc.wantStored)
			}
			if got := m.store.Verified(d); got != tc.wantVerified {
				t.Errorf("Verified = %v, want %v", got, tc.wantVerified)
			}
			if want := int64(0); (tc.damage || tc.truncate) && testStore(t, m).IntegrityStats().CorruptObjects == want {
				t.Errorf("the corrupt blob was not counted")
			}
		})
	}
}

// cachedBlobServer serves d from m's cache with serveCached. With condemn,
// a repairing verify runs after the reader opened the file and before it
// sends (a scrub's finding).
func cachedBlobServer(t *testing.T, m *Mirror, d digest.Digest, condemn bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd, err := m.store.Open(r.Context(), d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		defer rd.Close()
		if condemn {
			if _, err := testStore(t, m).Verify(context.Background(), cache.VerifyOptions{Repair: true}); err != nil {
				t.Errorf("Verify: %v", err)
			}
		}
		m.serveCached(w, r, rd, d)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// reopenStore closes the mirror's cache and opens it again on the same
// directory, as a restart does.
func reopenStore(t *testing.T, m *Mirror) {
	t.Helper()
	dir := testStore(t, m).Dir()
	if err := testStore(t, m).Close(); err != nil {
		t.Fatal(err)
	}
	m.store, m.records = openCache(t, cache.Options{Dir: dir})
}

func TestRangeOfUnverifiedBlobIsCheckedSoon(t *testing.T) {
	blob := bytes.Repeat([]byte("ranged at rest "), 10_000)
	d := digest.FromBytes(blob)
	for _, damaged := range []bool{false, true} {
		m := newTestMirror(t, "", "docker.io")
		if err := m.store.Put(d, blobContentType, blob); err != nil {
			t.Fatal(err)
		}
		reopenStore(t, m)
		if damaged {
			flipStored(t, testStore(t, m), d)
		}
		rd, err := m.store.Open(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "/v2/x/blobs/"+d.String(), nil)
		req.Header.Set("Range", "bytes=0-9")
		rec := httptest.NewRecorder()
		m.serveCached(rec, req, rd, d)
		rd.Close()
		if rec.Code != http.StatusPartialContent || rec.Body.Len() != 10 {
			t.Fatalf("damaged %v: range answered %d with %d bytes", damaged, rec.Code, rec.Body.Len())
		}
		// The background check settles it: verified, or removed.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, serr := m.store.Stat(d)
			if !damaged && m.store.Verified(d) || damaged && errors.Is(serr, cache.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("damaged %v: not settled: verified %v, stat %v", damaged, m.store.Verified(d), serr)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestServeCachedWholeAnswerIsChecked sends requests whose Range or
// conditional headers still end in the whole blob with 200 (RFC 9110
// section 14.2 ignores an unknown unit or an invalid range set; a failed
// If-None-Match or If-Range serves the whole content): that answer must be
// checked as a plain GET is, never sent unhashed from a corrupt file.
func TestServeCachedWholeAnswerIsChecked(t *testing.T) {
	blob := bytes.Repeat([]byte("regcache whole answer "), 30_000)
	d := digest.FromBytes(blob)
	etag := `"` + d.String() + `"`
	tests := []struct {
		name    string
		headers map[string]string
		// wantWhole: the answer is the whole blob with 200; otherwise
		// wantStatus with wantLen bytes of the blob from its start.
		wantWhole  bool
		wantStatus int
		wantLen    int
	}{
		{name: "last-pos before first-pos", headers: map[string]string{"Range": "bytes=5-1"}, wantWhole: true},
		{name: "unknown unit", headers: map[string]string{"Range": "items=0-1"}, wantWhole: true},
		{name: "no range-spec", headers: map[string]string{"Range": "bytes="}, wantWhole: true},
		{name: "ranges past the size", headers: map[string]string{"Range": "bytes=0-,0-"}, wantWhole: true},
		{name: "other etag", headers: map[string]string{"If-None-Match": `"other"`}, wantWhole: true},
		{name: "If-Range of another etag", headers: map[string]string{"Range": "bytes=0-9", "If-Range": `"other"`}, wantWhole: true},
		{name: "If-Range date", headers: map[string]string{"Range": "bytes=0-9", "If-Range": "Sun, 06 Nov 1994 08:49:37 GMT"}, wantWhole: true},
		{name: "If-Modified-Since", headers: map[string]string{"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}, wantWhole: true},
		{name: "If-Match this etag", headers: map[string]string{"If-Match": etag}, wantWhole: true},
		{name: "range", headers: map[string]string{"Range": "bytes=0-9"}, wantStatus: http.StatusPartialContent, wantLen: 10},
		{name: "If-Range of this etag", headers: map[string]string{"Range": "bytes=0-9", "If-Range": etag}, wantStatus: http.StatusPartialContent, wantLen: 10},
		{name: "this etag", headers: map[string]string{"If-None-Match": etag}, wantStatus: http.StatusNotModified},
		{name: "If-Match of another etag", headers: map[string]string{"If-Match": `"other"`}, wantStatus: http.StatusPreconditionFailed, wantLen: -1},
		{name: "unsatisfiable", headers: map[string]string{"Range": "bytes=99999999-"}, wantStatus: http.StatusRequestedRangeNotSatisfiable, wantLen: -1},
	}
	for _, tc := range tests {
		for _, state := range []string{"intact", "first read, flipped", "verified, condemned"} {
			t.Run(tc.name+"/"+state, func(t *testing.T) {
				m := newTestMirror(t, "", "docker.io")
				if err := m.store.Put(d, blobContentType, blob); err != nil {
					t.Fatal(err)
				}
				if state == "first read, flipped" {
					reopenStore(t, m)
				}
				if state != "intact" {
					flipStored(t, testStore(t, m), d)
				}
				srv := cachedBlobServer(t, m, d, state == "verified, condemned")
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				for k, v := range tc.headers {
					req.Header.Set(k, v)
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && rerr == nil && !bytes.Equal(body, blob) {
					t.Fatalf("a clean 200 with %d bytes that are not the blob", len(body))
				}
				if !tc.wantWhole {
					if resp.StatusCode != tc.wantStatus {
						t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
					}
					if tc.wantLen >= 0 && (rerr != nil || len(body) != tc.wantLen) {
						t.Fatalf("body of %d bytes (%v), want %d", len(body), rerr, tc.wantLen)
					}
					return
				}
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200", resp.StatusCode)
				}
				clean := rerr == nil && bytes.Equal(body, blob)
				if clean != (state == "intact") {
					t.Errorf("clean end with the blob's bytes: %v (read error %v, %d bytes), want %v", clean, rerr, len(body), state == "intact")
				}
				if got := m.store.Verified(d); got != (state == "intact") {
					t.Errorf("Verified = %v, want %v", got, state == "intact")
				}
			})
		}
	}
}
