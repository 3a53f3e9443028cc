package schedule_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/records"
	"github.com/regcache/regcache/schedule"
	"github.com/regcache/regcache/upstream"
)

// clock is a settable clock shared by the cache, the mirror and the
// scheduler.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

// TestMaxIdleKeepsSyncedAndPulled runs a sync rule and client pulls
// through a real mirror and cache over an in-memory registry, with one
// clock, then evicts for max_idle a month later: the image the rule keeps
// and the image a client pulled recently stay, the image nobody used goes
// with its tag, and a pull of what went fetches it again.
func TestMaxIdleKeepsSyncedAndPulled(t *testing.T) {
	reg := httptest.NewServer(registry.New())
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	images := map[string]v1.Image{}
	for _, tag := range []string{"1.0", "2.0", "3.0"} {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(host+"/library/app:"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		images[tag] = img
	}

	day := 24 * time.Hour
	clk := &clock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	rec := records.New()
	store, err := cache.Open(cache.Options{Dir: t.TempDir(), Now: clk.Now, MaxIdle: 30 * day, Dependent: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	up, err := upstream.New(upstream.Config{Name: mirror.DockerHub, Endpoints: []string{reg.URL}}, upstream.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mirror.New(mirror.Config{Upstreams: []*upstream.Client{up}, Store: store, Records: rec, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	s, err := schedule.New(schedule.Config{
		Rules:  []schedule.Rule{{Name: "docker.io/library/app", Tags: []string{"1.*"}}},
		Source: m, Pins: store, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := s.Run(t.Context(), "docker.io/library/app", nil); err != nil || st.Result != schedule.ResultOK || st.Pinned != 4 {
		t.Fatalf("sync: %+v, %v; want ok with 1.0's manifest, config and two layers pinned", st, err)
	}
	// A client pull: the manifest by tag, then the config and layers.
	pull := func(tag string) {
		t.Helper()
		for _, path := range pullPaths(t, images[tag], tag) {
			w := httptest.NewRecorder()
			m.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
			}
		}
	}
	pull("2.0")
	pull("3.0")
	clk.t = clk.t.Add(25 * day)
	pull("2.0") // used again within max_idle
	clk.t = clk.t.Add(6 * day)

	res, err := store.EvictIdle()
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 4 || res.Tags != 1 {
		t.Errorf("EvictIdle = %+v, want 3.0's four objects and its tag", res)
	}
	for tag, img := range images {
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		_, statErr := store.Inspect(digest.Digest(d.String()))
		_, tagErr := rec.Tag(mirror.DockerHub, "library/app", tag)
		if kept := tag != "3.0"; kept != (statErr == nil) || kept != (tagErr == nil) {
			t.Errorf("%s: manifest %v, tag %v; want kept %v", tag, statErr, tagErr, kept)
		}
	}
	pull("3.0") // fetched again
}

// pullPaths are the GETs of a client pull of img by tag.
func pullPaths(t *testing.T, img v1.Image, tag string) []string {
	t.Helper()
	paths := []string{"/v2/app/manifests/" + tag}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, "/v2/app/blobs/"+cfg.String())
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, "/v2/app/blobs/"+d.String())
	}
	return paths
}
