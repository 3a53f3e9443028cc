package upstream

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoCaddyImport keeps the package free of Caddy: only caddymodule may
// import it.
func TestNoCaddyImport(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(dep, "github.com/caddyserver/") {
			t.Errorf("upstream depends on %s", dep)
		}
	}
}
