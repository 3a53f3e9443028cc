package access

import (
	"context"
	"errors"
	"testing"
)

func TestFlightSharesPerIdentity(t *testing.T) {
	alice, bob := NewPrincipal("a11ce", ""), NewPrincipal("b0b", "")
	tests := []struct {
		name  string
		who   []Principal // one caller each, all for the same object
		calls int
	}{
		{"one identity shares one call", []Principal{alice, alice, alice}, 1},
		{"two identities make two calls", []Principal{alice, bob, alice, bob}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f Flight[string, int]
			release := make(chan struct{})
			// Callers that give up at once: each starts a call or joins
			// the one in flight for its key, which runs on without them.
			gaveUp, cancel := context.WithCancel(context.Background())
			cancel()
			for _, who := range tc.who {
				_, err := f.Do(gaveUp, KeyOf(who, "sha256:abc"), func(context.Context) (int, error) {
					<-release
					return 7, nil
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Do = %v, want the caller's context error", err)
				}
			}
			f.mu.Lock()
			inFlight := len(f.calls)
			f.mu.Unlock()
			close(release)
			if inFlight != tc.calls {
				t.Errorf("%d calls in flight, want %d", inFlight, tc.calls)
			}
			v, err := f.Do(context.Background(), KeyOf(alice, "sha256:abc"), func(context.Context) (int, error) { return 8, nil })
			if v != 7 && v != 8 || err != nil {
				t.Errorf("Do after release = %d, %v; want a result", v, err)
			}
		})
	}
}
