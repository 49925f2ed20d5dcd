package spotflowhttp_test

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// Every Example in the repository, sub-modules included, must be a program
// pkg.go.dev can show and run: go/doc gives it a playable form only when it
// uses nothing but its own file's declarations and imported packages (a
// helper from another test file, such as a fake clock, takes that away).
func TestExamplesArePlayable(t *testing.T) {
	dirs := map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for dir, paths := range dirs {
		fset := token.NewFileSet()
		var files []*ast.File
		for _, p := range paths {
			f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		for _, ex := range doc.Examples(files...) {
			n++
			if ex.Play == nil {
				t.Errorf("%s: Example%s is not a complete program (go/doc gives it no playable form): "+
					"does it use a helper from another file?", dir, ex.Name)
			}
		}
	}
	if n < 20 {
		t.Errorf("found only %d examples; is the walk looking in the right place?", n)
	}
}
