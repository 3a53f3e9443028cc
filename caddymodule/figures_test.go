package caddymodule

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/regcache/regcache/cache"
	"github.com/regcache/regcache/mirror"
	"github.com/regcache/regcache/s3tier"
)

// TestFiguresRenderings: the admin JSON, the metrics and the history
// render one set of figures alike, the shared bucket's included.
func TestFiguresRenderings(t *testing.T) {
	f := figures{
		At:      time.Unix(1700000000, 0),
		Storage: "/cache",
		Cache:   cache.Stats{Objects: 7, UsedBytes: 700, BudgetBytes: 1000},
		Mirror: mirror.Stats{
			Requests:       []mirror.RequestCount{{Kind: "manifest", Result: "hit", Count: 3}, {Kind: "blob", Result: "miss", Count: 1}},
			BytesFromCache: 300, BytesFromUpstream: 100,
		},
		Shared: &s3tier.Stats{FromBucket: 5, Unavailable: true},
	}
	cs := f.cacheStats()
	if cs.Storage != "/cache" || cs.Objects != 7 || cs.HitRatio != 0.75 || cs.Requests["manifest"]["hit"] != 3 || cs.BytesFromCache != 300 {
		t.Errorf("cacheStats() = %+v", cs)
	}
	if s := f.sample(); s.Hits != 3 || s.Misses != 1 || s.BytesFromCache != 300 || !s.At.Equal(f.At) {
		t.Errorf("sample() = %+v", s)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(newCacheCollector(f.Storage, func() figures { return f })); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() != "storage" {
					name += "," + l.GetName() + "=" + l.GetValue()
				}
			}
			got[name] = value(m)
		}
	}
	for name, want := range map[string]float64{
		"caddy_registry_cache_objects":                                 7,
		"caddy_registry_cache_requests_total,kind=manifest,result=hit": 3,
		"caddy_registry_cache_served_bytes_total,source=cache":         300,
		"caddy_registry_cache_shared_fills_total,source=bucket":        5,
		"caddy_registry_cache_shared_unavailable":                      1,
	} {
		if got[name] != want {
			t.Errorf("metric %s = %v, want %v", name, got[name], want)
		}
	}
	f.Shared = nil
	families, _ = reg.Gather()
	for _, mf := range families {
		if mf.GetName() == "caddy_registry_cache_shared_unavailable" {
			t.Errorf("a cache without a shared bucket reports %s", mf.GetName())
		}
	}
}

// value returns a gauge's or counter's value.
func value(m *dto.Metric) float64 {
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}
