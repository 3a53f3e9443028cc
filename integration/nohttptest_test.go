package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestRecorderOutsideTests: no code of the project outside its
// tests imports net/http/httptest. The mirror's own pulls (warm, sync)
// call its pull path, never its HTTP handler with a recorded response.
func TestNoTestRecorderOutsideTests(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	// Imports lists the imports of the non-test files only.
	out, err := exec.Command(goTool, "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`,
		"github.com/regcache/regcache/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("go list listed only %q", lines)
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		for _, imp := range fields[1:] {
			if imp == "net/http/httptest" {
				t.Errorf("%s imports net/http/httptest outside its tests", fields[0])
			}
		}
	}
}
