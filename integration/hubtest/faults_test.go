package hubtest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// answer is what a client got: an error, or a status, headers and body
// (with the error that ended the body, if any).
type answer struct {
	err     error
	status  int
	header  http.Header
	body    []byte
	bodyErr error
}

// fetch sends a GET on a new connection (so that a refused connection is
// not retried on another) and reads the whole answer.
func fetch(t *testing.T, method, u, tok string) answer {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	body, bodyErr := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: body, bodyErr: bodyErr}
}

func TestFaults(t *testing.T) {
	h := startHub(t, Options{})
	const size = 128 << 10
	const seed = 3
	layer, manifest, err := h.PushLargeBlobImage("library/f", "1", size, seed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(SeededBlob(size, seed))
	if err != nil {
		t.Fatal(err)
	}
	tok := token(t, h, "", "", "repository:library/f:pull")
	manifestURL := h.URL + "/v2/library/f/manifests/1"
	blobURL := h.URL + "/v2/library/f/blobs/" + layer
	cdnURL := h.signedBlobURL("library/f", layer, cdnLifetime)
	tokenURL := h.RealmURL + "?" + url.Values{"service": {h.Service}, "scope": {"repository:library/f:pull"}}.Encode()

	tests := []struct {
		name   string
		fault  Fault
		faults int64 // requests the fault must have been applied to
		check  func(t *testing.T)
	}{
		{"refuse manifests", Fault{Kind: FaultRefuse, Target: TargetManifest}, 2, func(t *testing.T) {
			for range 2 {
				if a := fetch(t, http.MethodGet, manifestURL, tok); a.err == nil {
					t.Errorf("refused manifest GET answered %d", a.status)
				}
			}
			if a := fetch(t, http.MethodGet, cdnURL, ""); a.err != nil || a.status != 200 {
				t.Errorf("a blob was refused by a manifest fault: %+v", a)
			}
		}},
		{"refuse the CDN", Fault{Kind: FaultRefuse, Target: TargetBlob, Count: 1}, 1, func(t *testing.T) {
			if a := fetch(t, http.MethodGet, cdnURL, ""); a.err == nil {
				t.Errorf("refused CDN GET answered %d", a.status)
			}
		}},
		{"503 once", Fault{Kind: Fault503, Target: TargetManifest, Count: 1}, 1, func(t *testing.T) {
			a := fetch(t, http.MethodGet, manifestURL, tok)
			if a.status != 503 || errorCode(a.body) != "UNAVAILABLE" {
				t.Errorf("first GET: %d %s", a.status, a.body)
			}
			if a := fetch(t, http.MethodGet, manifestURL, tok); a.status != 200 {
				t.Errorf("second GET after Count 1: %d %s", a.status, a.body)
			}
		}},
		{"503 twice on front blob GETs", Fault{Kind: Fault503, Target: TargetBlob, Count: 2}, 2, func(t *testing.T) {
			for i, status := range []int{503, 503, 307} {
				if a := fetch(t, http.MethodGet, blobURL, tok); a.status != status {
					t.Errorf("blob GET %d: status %d, want %d", i, a.status, status)
				}
			}
		}},
		{"429 on tokens", Fault{Kind: Fault429, Target: TargetToken, Count: 1}, 1, func(t *testing.T) {
			a := fetch(t, http.MethodGet, tokenURL, "")
			if a.status != 429 || a.header.Get("Retry-After") != "7" || errorCode(a.body) != "TOOMANYREQUESTS" {
				t.Errorf("token request: %d Retry-After %q %s", a.status, a.header.Get("Retry-After"), a.body)
			}
			if h.Counters.TooMany.Load() != 1 {
				t.Errorf("TooMany = %d, want 1", h.Counters.TooMany.Load())
			}
			if a := fetch(t, http.MethodGet, tokenURL, ""); a.status != 200 {
				t.Errorf("token request after the fault: %d", a.status)
			}
		}},
		{"a token fault spares manifests", Fault{Kind: Fault503, Target: TargetToken}, 0, func(t *testing.T) {
			if a := fetch(t, http.MethodGet, manifestURL, tok); a.status != 200 {
				t.Errorf("manifest GET: %d", a.status)
			}
		}},
		{"503 everywhere", Fault{Kind: Fault503}, 3, func(t *testing.T) {
			for _, u := range []string{tokenURL, manifestURL, cdnURL} {
				bearer := tok
				if u == cdnURL {
					bearer = ""
				}
				if a := fetch(t, http.MethodGet, u, bearer); a.status != 503 {
					t.Errorf("GET %s: %d", u, a.status)
				}
			}
		}},
		{"latency", Fault{Kind: FaultLatency, Target: TargetManifest, Delay: 20 * time.Millisecond}, 1, func(t *testing.T) {
			a := fetch(t, http.MethodGet, manifestURL, tok)
			if a.status != 200 || sha256Digest(a.body) != manifest {
				t.Errorf("delayed manifest: %d, digest %s, want %s", a.status, sha256Digest(a.body), manifest)
			}
		}},
		{"bandwidth", Fault{Kind: FaultBandwidth, Target: TargetBlob, BytesPerSecond: 4 << 20}, 1, func(t *testing.T) {
			h.Counters.CDNBytes.Store(0)
			a := fetch(t, http.MethodGet, cdnURL, "")
			if a.status != 200 || a.bodyErr != nil || sha256Digest(a.body) != layer {
				t.Errorf("throttled blob: %d, body error %v, digest %s", a.status, a.bodyErr, sha256Digest(a.body))
			}
			if got := h.Counters.CDNBytes.Load(); got != size {
				t.Errorf("CDN bytes %d, want %d", got, size)
			}
		}},
		{"truncate a blob", Fault{Kind: FaultTruncate, Target: TargetBlob}, 1, func(t *testing.T) {
			a := fetch(t, http.MethodGet, cdnURL, "")
			if a.status != 200 || a.header.Get("Content-Length") != "131072" || !errors.Is(a.bodyErr, io.ErrUnexpectedEOF) {
				t.Errorf("truncated blob: %d, length %q, body error %v", a.status, a.header.Get("Content-Length"), a.bodyErr)
			}
			if len(a.body) != size/2 || !bytes.Equal(a.body, want[:size/2]) {
				t.Errorf("truncated blob: got %d bytes, want the first %d", len(a.body), size/2)
			}
		}},
		{"truncate a manifest, not a HEAD", Fault{Kind: FaultTruncate, Target: TargetManifest, Count: 1}, 1, func(t *testing.T) {
			if a := fetch(t, http.MethodHead, manifestURL, tok); a.status != 200 || a.err != nil {
				t.Errorf("HEAD: %+v", a)
			}
			a := fetch(t, http.MethodGet, manifestURL, tok)
			if a.status != 200 || !errors.Is(a.bodyErr, io.ErrUnexpectedEOF) {
				t.Errorf("truncated manifest: %d, body error %v", a.status, a.bodyErr)
			}
		}},
		{"corrupt a blob", Fault{Kind: FaultCorrupt, Target: TargetBlob}, 1, func(t *testing.T) {
			a := fetch(t, http.MethodGet, cdnURL, "")
			if a.status != 200 || a.bodyErr != nil || len(a.body) != size {
				t.Fatalf("corrupt blob: %d, body error %v, %d bytes", a.status, a.bodyErr, len(a.body))
			}
			var diff []int
			for i := range a.body {
				if a.body[i] != want[i] {
					diff = append(diff, i)
				}
			}
			if len(diff) != 1 || diff[0] != size/2 || sha256Digest(a.body) == layer {
				t.Errorf("corrupt blob differs at %v, want only at %d", diff, size/2)
			}
		}},
		{"corrupt a manifest", Fault{Kind: FaultCorrupt, Target: TargetManifest}, 1, func(t *testing.T) {
			a := fetch(t, http.MethodGet, manifestURL, tok)
			if a.status != 200 || a.bodyErr != nil || sha256Digest(a.body) == a.header.Get("Docker-Content-Digest") {
				t.Errorf("corrupt manifest: %d, body error %v, digest %s matches", a.status, a.bodyErr, sha256Digest(a.body))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.Counters.Reset()
			h.SetFault(tc.fault)
			defer h.SetFault(Fault{})
			tc.check(t)
			if got := h.Counters.Faults.Load(); got != tc.faults {
				t.Errorf("faults applied: %d, want %d", got, tc.faults)
			}
		})
	}
}

// TestFaultsSeenByClient pulls a layer with go-containerregistry through a
// truncating and a corrupting CDN: the client must fail, not accept the
// bytes.
func TestFaultsSeenByClient(t *testing.T) {
	h := startHub(t, Options{})
	_, _, err := h.PushImage("library/c", "1", 1, 64<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind FaultKind
		want string
	}{
		{FaultTruncate, "unexpected EOF"},
		{FaultCorrupt, "checksum"},
	}
	for _, tc := range tests {
		t.Run(tc.kind.String(), func(t *testing.T) {
			img, err := remote.Image(frontRef(t, h, "library/c", "1"))
			if err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			h.SetFault(Fault{Kind: tc.kind, Target: TargetBlob, Count: 1})
			defer h.SetFault(Fault{})
			rc, err := layers[0].Compressed()
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				if cerr := rc.Close(); err == nil {
					err = cerr
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("reading the layer: error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestFaultKindString(t *testing.T) {
	tests := []struct {
		kind FaultKind
		want string
	}{
		{FaultNone, "none"}, {FaultRefuse, "refuse"}, {Fault503, "503"}, {Fault429, "429"},
		{FaultLatency, "latency"}, {FaultBandwidth, "bandwidth"}, {FaultTruncate, "truncate"},
		{FaultCorrupt, "corrupt"}, {FaultNoBody, "no-body"}, {FaultOversize, "oversize"},
		{FaultCut, "cut"}, {FaultConnBandwidth, "conn-bandwidth"}, {FaultIgnoreRange, "ignore-range"},
		{FaultWrongRange, "wrong-range"}, {FaultExpiry, "expiry"}, {FaultKind(99), "fault(99)"},
	}
	for _, tc := range tests {
		if got := tc.kind.String(); got != tc.want {
			t.Errorf("FaultKind(%d).String() = %q, want %q", int(tc.kind), got, tc.want)
		}
	}
}
