package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdapt keeps the Caddyfile syntax and the JSON config in
// step: each file in caddyfile_adapt/ holds a Caddyfile, a line of dashes
// and the JSON it must adapt to.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("caddyfile_adapt/*.caddytest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in caddyfile_adapt/: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, json, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s has no ---------- separator", f)
			}
			if !caddytest.CompareAdapt(t, f, caddyfile, "caddyfile", strings.TrimSpace(json)) {
				t.Errorf("%s: the Caddyfile no longer adapts to its JSON", f)
			}
		})
	}
}

// TestCaddyfileExampleAdapts keeps the shipped example valid: it must adapt
// without warnings and configure the registry_cache handler.
func TestCaddyfileExampleAdapts(t *testing.T) {
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("Caddyfile.example warnings: %v", warnings)
	}
	if !strings.Contains(string(cfg), `"handler":"registry_cache"`) {
		t.Errorf("Caddyfile.example does not configure registry_cache: %s", cfg)
	}
}
