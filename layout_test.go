package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "github.com/meshcast/meshcast"

// layoutRules: the packages under each folder (key) must not import the packages under the
// listed folders. core/ is the domain both roles build on; bridge/ and edge/ scale apart and
// share only core/.
var layoutRules = map[string][]string{
	"core":   {"bridge", "edge"},
	"bridge": {"edge"},
	"edge":   {"bridge"},
}

// TestLayoutImports reads the imports of every Go file (test files and every build tag
// included) under core/, bridge/ and edge/ and fails on one that crosses layoutRules. Direct
// imports are enough: a package outside this module cannot import one of ours, so a forbidden
// dependency of core/ always shows as a direct import in some file under core/.
func TestLayoutImports(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	for dir, banned := range layoutRules {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			for _, imp := range f.Imports {
				p, err := strconv.Unquote(imp.Path.Value)
				if err != nil {
					return err
				}
				for _, b := range banned {
					if p == modulePath+"/"+b || strings.HasPrefix(p, modulePath+"/"+b+"/") {
						t.Errorf("%s imports %s: packages under %s/ must not import %s/", fset.Position(imp.Pos()), p, dir, b)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 50 {
		t.Fatalf("read only %d Go files under %v: is the test running in the module root?", checked, layoutRules)
	}
}
