package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// configMapCaddyfile returns the Caddyfile held by the Kubernetes
// ConfigMap (the block under "  Caddyfile: |", four spaces indented).
func configMapCaddyfile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(data), "  Caddyfile: |\n")
	if !ok {
		t.Fatalf("%s holds no Caddyfile key", path)
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if l != "" && !strings.HasPrefix(l, "    ") {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	return []byte(strings.Join(lines, "\n"))
}

// TestShippedCaddyfilesAdapt keeps the Caddyfiles the deployment ships
// valid: each adapts without warnings to a config with registry_cache, the
// listeners and hosts its documentation promises, and a /healthz answered
// without credentials where probes use it.
func TestShippedCaddyfilesAdapt(t *testing.T) {
	tests := []struct {
		name string
		file string
		// env is set while adapting ({$VAR} placeholders).
		env  map[string]string
		want []string
	}{
		{"example on the default port", "../Caddyfile.example", nil,
			[]string{`"listen":["127.0.0.1:5000"]`, `"host":["localhost","127.0.0.1"]`}},
		{"example on REGCACHE_PORT", "../Caddyfile.example", map[string]string{"REGCACHE_PORT": "5077"},
			[]string{`"listen":["127.0.0.1:5077"]`}},
		{"systemd service", "../deploy/systemd/Caddyfile", map[string]string{"REGCACHE_SITE": "mirror.office.example", "REGCACHE_MAX_SIZE": "20GiB"},
			[]string{`"host":["mirror.office.example"]`, `"max_size":21474836480`, `"storage":"/var/lib/regcache/cache"`, `"path":["/healthz"]`}},
		{"container image", "../deploy/image/Caddyfile", nil,
			[]string{`"listen":[":5000"]`, `"storage":"/data/cache"`, `"max_size":10737418240`, `"path":["/healthz"]`}},
		{"Kubernetes ConfigMap", "../deploy/kubernetes/configmap.yaml", nil,
			[]string{`"listen":[":5000"]`, `"storage":"/data/cache"`, `"handler":"metrics"`, `"path":["/healthz"]`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var data []byte
			if strings.HasSuffix(tc.file, ".yaml") {
				data = configMapCaddyfile(t, tc.file)
			} else {
				var err error
				if data, err = os.ReadFile(tc.file); err != nil {
					t.Fatal(err)
				}
			}
			cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, map[string]any{"filename": tc.file})
			if err != nil {
				t.Fatalf("adapting %s: %v", tc.file, err)
			}
			if len(warnings) > 0 {
				t.Errorf("%s: warnings %v", tc.file, warnings)
			}
			for _, want := range append(tc.want, `"handler":"registry_cache"`) {
				if !strings.Contains(string(cfg), want) {
					t.Errorf("%s adapts without %s:\n%s", tc.file, want, cfg)
				}
			}
		})
	}
}
