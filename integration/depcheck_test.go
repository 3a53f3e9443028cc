package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyCaddymoduleImportsCaddy keeps the layering of the design: the
// pull-through logic, the registry client, the protocol vocabulary and the
// cache never depend on Caddy, and dependencies point down only.
func TestOnlyCaddymoduleImportsCaddy(t *testing.T) {
	const module = "github.com/regcache/regcache/"
	tests := []struct {
		pkg       string
		forbidden []string // import path prefixes the package must not depend on
	}{
		{"oci", []string{"github.com/caddyserver/", module + "cache", module + "upstream", module + "mirror", module + "access", module + "caddymodule"}},
		{"access", []string{"github.com/caddyserver/", "github.com/minio/", module + "cache", module + "upstream", module + "mirror", module + "s3tier", module + "caddymodule"}},
		{"cache", []string{"github.com/caddyserver/", "github.com/minio/", module + "upstream", module + "mirror", module + "access", module + "records", module + "s3tier", module + "caddymodule"}},
		{"records", []string{"github.com/caddyserver/", "github.com/minio/", module + "upstream", module + "mirror", module + "access", module + "s3tier", module + "caddymodule"}},
		{"upstream", []string{"github.com/caddyserver/", module + "cache", module + "mirror", module + "access", module + "caddymodule"}},
		{"mirror", []string{"github.com/caddyserver/", "github.com/minio/", module + "s3tier", module + "caddymodule"}},
		{"episode", []string{"github.com/caddyserver/", module + "oci", module + "cache", module + "upstream", module + "mirror", module + "s3tier", module + "caddymodule"}},
		{"s3tier", []string{"github.com/caddyserver/", module + "upstream", module + "mirror", module + "access", module + "caddymodule"}},
		{"schedule", []string{"github.com/caddyserver/", "github.com/minio/", module + "s3tier", module + "caddymodule"}},
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command(goTool, "list", "-deps", module+tc.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps: %v\n%s", err, out)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 5 {
				t.Fatalf("go list -deps listed only %v", deps)
			}
			for _, dep := range deps {
				for _, f := range tc.forbidden {
					if strings.HasPrefix(dep, f) {
						t.Errorf("%s depends on %s", tc.pkg, dep)
					}
				}
			}
		})
	}
}
