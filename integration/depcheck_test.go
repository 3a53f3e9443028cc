package integration

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
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
		{"oci", []string{"github.com/caddyserver/", module + "cache", module + "records", module + "upstream", module + "mirror", module + "access", module + "s3tier", module + "caddymodule"}},
		{"access", []string{"github.com/caddyserver/", "github.com/minio/", module + "cache", module + "records", module + "upstream", module + "mirror", module + "s3tier", module + "caddymodule"}},
		{"cache", []string{"github.com/caddyserver/", "github.com/minio/", module + "upstream", module + "mirror", module + "access", module + "records", module + "s3tier", module + "caddymodule"}},
		// The records keep tags, links and grants in the content store's
		// meta.db; they know nothing of the tier that may wrap them.
		{"records", []string{"github.com/caddyserver/", "github.com/minio/", module + "upstream", module + "mirror", module + "access", module + "s3tier", module + "caddymodule"}},
		{"upstream", []string{"github.com/caddyserver/", module + "cache", module + "records", module + "mirror", module + "access", module + "s3tier", module + "caddymodule"}},
		// The mirror reaches the content, the records and the peers only
		// through interfaces it declares; caddymodule wires the stores,
		// plain or wrapped by the shared tier, which the mirror never names.
		{"mirror", []string{"github.com/caddyserver/", "github.com/minio/", module + "records", module + "s3tier", module + "caddymodule"}},
		{"episode", []string{"github.com/caddyserver/", module + "oci", module + "cache", module + "records", module + "upstream", module + "mirror", module + "s3tier", module + "caddymodule"}},
		// The shared tier wraps the content store and the records from
		// outside: it depends on cache, never the other way round.
		{"s3tier", []string{"github.com/caddyserver/", module + "upstream", module + "mirror", module + "access", module + "caddymodule"}},
		{"schedule", []string{"github.com/caddyserver/", "github.com/minio/", module + "records", module + "s3tier", module + "caddymodule"}},
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

// TestLayersUseInterfaces keeps what the import graph cannot tell: the
// mirror names neither the concrete content store nor its opening (it
// gets them through its own interfaces), and no package asserts the
// shared tier's type back out of what wraps it.
func TestLayersUseInterfaces(t *testing.T) {
	tests := []struct {
		dir       string
		forbidden []string // selector expressions the package must not use
	}{
		{"../mirror", []string{"cache.Store", "cache.Open"}},
		{"../access", []string{"cache.Store", "cache.Open"}},
		{"../schedule", []string{"cache.Open", "s3tier.Tier"}},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			for _, f := range parseDir(t, tc.dir) {
				ast.Inspect(f.file, func(n ast.Node) bool {
					sel, ok := n.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					if x, ok := sel.X.(*ast.Ident); ok && slices.Contains(tc.forbidden, x.Name+"."+sel.Sel.Name) {
						t.Errorf("%s uses %s.%s", f.fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
					}
					return true
				})
			}
		})
	}
	for _, dir := range []string{"../caddymodule", "../mirror", "../cache", "../records", "../schedule", "../access"} {
		t.Run(dir+" asserts no tier", func(t *testing.T) {
			for _, f := range parseDir(t, dir) {
				ast.Inspect(f.file, func(n ast.Node) bool {
					var typ ast.Expr
					switch n := n.(type) {
					case *ast.TypeAssertExpr:
						typ = n.Type
					case *ast.CaseClause:
						for _, e := range n.List {
							if mentions(e, "s3tier") {
								t.Errorf("%s: a type switch names the shared tier", f.fset.Position(e.Pos()))
							}
						}
						return true
					default:
						return true
					}
					if typ != nil && mentions(typ, "s3tier") {
						t.Errorf("%s: a type assertion names the shared tier", f.fset.Position(n.Pos()))
					}
					return true
				})
			}
		})
	}
}

// parsedFile is one parsed source file.
type parsedFile struct {
	fset *token.FileSet
	file *ast.File
}

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) []parsedFile {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	var out []parsedFile
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, parsedFile{fset, f})
	}
	return out
}

// mentions reports whether expression e names package pkg.
func mentions(e ast.Expr, pkg string) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == pkg {
				found = true
			}
		}
		return !found
	})
	return found
}
