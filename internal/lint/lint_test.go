// Package lint checks the repository's own rules: the import boundaries of
// DESIGN.md section 1 and STYLE.md.
package lint

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/millstream/millstream/"

// forbidden maps a folder to import path prefixes it must not use.
// actors/admin is served beside the runtime, never imported by it: the
// runtime only offers its read API (actors/status.go).
var forbidden = map[string][]string{
	"operators": {module + "actors", module + "cluster", module + "state", module + "cmd",
		"github.com/asynkron/protoactor-go", "github.com/cockroachdb/pebble", "github.com/hashicorp/memberlist", "github.com/eclipse/paho.mqtt.golang"},
	"state":  {module + "operators", module + "actors", module + "cluster", "github.com/asynkron/protoactor-go", "github.com/hashicorp/memberlist"},
	"proto":  {module},
	"actors": {module + "cluster", module + "actors/admin", "github.com/hashicorp/memberlist", "github.com/cockroachdb/pebble", "github.com/dop251/goja"},
	// The JavaScript engine stays inside operators/udf.
	"cluster":  {"github.com/dop251/goja"},
	"internal": {"github.com/dop251/goja"},
	"cmd":      {"github.com/dop251/goja"},
}

func TestImportBoundaries(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for dir, bad := range forbidden {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if dir == "proto" && strings.HasPrefix(p, module+"proto") {
					continue
				}
				for _, b := range bad {
					if strings.HasPrefix(p, b) {
						rel, _ := filepath.Rel(root, path)
						t.Errorf("%s imports %s: %s/ must not depend on it (DESIGN.md section 1)", rel, p, dir)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d files: is the walk rooted right?", checked)
	}
}

// TestPackagesHaveDocs checks that every package has a package comment.
func TestPackagesHaveDocs(t *testing.T) {
	root, _ := filepath.Abs("../..")
	seen := map[string]bool{}
	documented := map[string]bool{}
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		seen[dir] = true
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			documented[dir] = true
		}
		return nil
	})
	for dir := range seen {
		if !documented[dir] {
			rel, _ := filepath.Rel(root, dir)
			t.Errorf("package in %s has no doc comment (add a doc.go)", rel)
		}
	}
}
