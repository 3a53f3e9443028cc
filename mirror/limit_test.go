package mirror

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/regcache/regcache/upstream"
)

func TestLimiter(t *testing.T) {
	tests := []struct {
		name    string
		taken   int  // slots taken before the acquire
		cancel  bool // the caller's context is already done
		wantErr error
	}{
		{"a free slot", 1, false, nil},
		{"every slot taken", 2, false, errBusy},
		{"every slot taken, caller gone", 2, true, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(2, 10*time.Millisecond)
			for range tc.taken {
				if err := l.acquire(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.cancel {
				cancel()
			}
			defer cancel()
			err := l.acquire(ctx)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("acquire = %v, want %v", err, tc.wantErr)
			}
			if err == nil && l.inUse() != tc.taken+1 {
				t.Errorf("in use = %d, want %d", l.inUse(), tc.taken+1)
			}
			l.release()
			if err := l.acquire(context.Background()); err != nil {
				t.Errorf("acquire after a release = %v", err)
			}
		})
	}
}

// TestUpstreamSlotHeldUntilBodyClosed checks that a response of
// upstreamDo keeps its slot until its body is closed, once.
func TestUpstreamSlotHeldUntilBodyClosed(t *testing.T) {
	mt := newManifestTest(t, Config{MaxUpstreamRequests: 1}, upstream.Options{})
	mt.reg.push("library/app", "1")
	tg, err := mt.m.resolve(httptestRequest("/v2/app/manifests/1"), "app")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := mt.m.upstreamDo(context.Background(), tg, headManifest("1"))
	if err != nil {
		t.Fatal(err)
	}
	if mt.m.upstreamSlots.inUse() != 1 {
		t.Fatalf("slots in use with an open body = %d, want 1", mt.m.upstreamSlots.inUse())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := mt.m.upstreamDo(ctx, tg, headManifest("1")); err == nil {
		t.Error("a second request got the only slot while the first body was open")
	}
	_ = resp.Body.Close()
	_ = resp.Body.Close()
	if mt.m.upstreamSlots.inUse() != 0 {
		t.Errorf("slots in use after Close = %d, want 0", mt.m.upstreamSlots.inUse())
	}
}

func httptestRequest(path string) *http.Request {
	return httptest.NewRequest(http.MethodGet, path, nil)
}

func headManifest(ref string) upstream.Request {
	return upstream.Request{Method: http.MethodHead, Repository: "library/app", Path: "manifests/" + ref}
}
