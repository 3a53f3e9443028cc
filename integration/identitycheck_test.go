package integration

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// identityWords names what an identity or credentials look like in the
// key or value of a context: a context that carries one is a wrong edge.
var identityWords = regexp.MustCompile(`(?i)cred|identit|principal|login|password|\bwho\b`)

// removedIdentityHelpers are the helpers that once carried the identity in
// a context; none may come back.
var removedIdentityHelpers = map[string]bool{
	"WithCredentials": true, "CopyCredentials": true, "HasOwnCredentials": true,
	"credentialsKey": true, "withClient": true,
}

// TestIdentityIsNotInAContext keeps the identity explicit: who a request
// is made for (access.Principal) and the credentials it goes upstream with
// (upstream.Credentials) travel with the request's target, never in a
// context. Outside the access package, no production file puts an
// identity or credentials into a context or reads one from it, and the
// helpers that once did are gone. In the mirror, every upstream request
// goes through the target's do, which sends the client's credentials.
func TestIdentityIsNotInAContext(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "access" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		files++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		found := identityInContext(fset, f)
		if filepath.Dir(rel) == "mirror" {
			found = append(found, upstreamCallsBesideTarget(fset, f)...)
		}
		for _, p := range found {
			t.Errorf("%s: %s", rel, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d Go files under %s", files, root)
	}
}

// identityInContext returns the places where the Go file f puts an
// identity into a context, reads one from it, or names a removed helper.
func identityInContext(fset *token.FileSet, f *ast.File) []string {
	src := func(n ast.Node) string {
		var b bytes.Buffer
		_ = printer.Fprint(&b, fset, n)
		return b.String()
	}
	var found []string
	report := func(n ast.Node, what string) {
		found = append(found, fset.Position(n.Pos()).String()+": "+what)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.Ident:
			if removedIdentityHelpers[n.Name] {
				report(n, "names "+n.Name+", which carried the identity in a context")
			}
		case *ast.CallExpr:
			// context.WithValue(parent, key, value)
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "WithValue" && len(n.Args) == 3 {
				if kv := src(n.Args[1]) + " " + src(n.Args[2]); identityWords.MatchString(kv) {
					report(n, "puts an identity into a context: "+src(n))
				}
			}
		case *ast.TypeAssertExpr:
			// ctx.Value(key).(T)
			call, ok := n.X.(*ast.CallExpr)
			if !ok || n.Type == nil {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Value" && len(call.Args) == 1 {
				if kt := src(call.Args[0]) + " " + src(n.Type); identityWords.MatchString(kt) {
					report(n, "reads an identity from a context: "+src(n))
				}
			}
		}
		return true
	})
	return found
}

// upstreamCallsBesideTarget returns the places where the mirror's Go file
// f calls an upstream client's Do or MayGet (x.upstream.Do, whose
// budget HEAD is a request too) anywhere but in the target's do and
// mayGet methods, which add the client's credentials.
func upstreamCallsBesideTarget(fset *token.FileSet, f *ast.File) []string {
	var found []string
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if ok && (fn.Name.Name == "do" || fn.Name.Name == "mayGet") && fn.Recv != nil {
			continue
		}
		ast.Inspect(decl, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Do" && sel.Sel.Name != "MayGet") {
				return true
			}
			if x, ok := sel.X.(*ast.SelectorExpr); ok && x.Sel.Name == "upstream" {
				found = append(found, fset.Position(sel.Pos()).String()+": calls the upstream without the target's credentials (use the target's do or mayGet)")
			}
			return true
		})
	}
	return found
}
