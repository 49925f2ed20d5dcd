package spotflowhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// Every Example in the repository, sub-modules included, must be a program
// pkg.go.dev can show and run: go/doc gives it a playable form only when it
// uses nothing but its own file's declarations and imported packages (a
// helper from another test file, such as a fake clock, takes that away).
//
// pkg.go.dev renders with the newest Go. Before Go 1.26, go/doc gave no
// playable form to an example importing a package whose name differs from
// its path's last element (backoff/v4, redis/v9), so on older Go the test
// cannot tell a helper from such an import and does not run.
func TestExamplesArePlayable(t *testing.T) {
	if v := runtime.Version(); strings.HasPrefix(v, "go1.2") && len(v) >= 6 && v[:6] < "go1.26" {
		t.Skipf("%s: go/doc before Go 1.26 makes no playable form for versioned imports", v)
	}
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

// readmeProgram is a complete program in a ```go block of the README.
type readmeProgram struct {
	line int    // of the block's first line in README.md
	src  string // the block's text
	file *ast.File
}

// readmePrograms returns the README's Go blocks that are programs
// (package main); other Go blocks are fragments, not checked.
func readmePrograms(t *testing.T) []readmeProgram {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var progs []readmeProgram
	lines := strings.SplitAfter(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		start := i + 1
		var src strings.Builder
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			src.WriteString(lines[i])
		}
		if !strings.HasPrefix(src.String(), "package main\n") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), "README.md", src.String(), parser.ParseComments)
		if err != nil {
			t.Errorf("README.md:%d: %v", start+1, err)
			continue
		}
		progs = append(progs, readmeProgram{line: start + 1, src: src.String(), file: f})
	}
	return progs
}

// Every program in the README compiles in the module whose
// packages it imports: the README is what a new user copies first.
func TestREADMEProgramsBuild(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	progs := readmePrograms(t)
	if len(progs) < 3 {
		t.Fatalf("found %d programs in README.md, want the quick start, the generated client, redislimit and spotflowtest", len(progs))
	}
	// Each program becomes a package of its module through an overlay:
	// nothing is written into the source tree.
	type module struct {
		overlay map[string]string
		pkgs    []string
	}
	modules := map[string]*module{}
	dir := t.TempDir()
	for i, p := range progs {
		mod := "."
		for _, imp := range p.file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, sub := range []string{"redislimit", "examples", "bench"} {
				if path == modulePath+"/"+sub || strings.HasPrefix(path, modulePath+"/"+sub+"/") {
					mod = sub
				}
			}
		}
		abs, err := filepath.Abs(mod)
		if err != nil {
			t.Fatal(err)
		}
		m := modules[abs]
		if m == nil {
			m = &module{overlay: map[string]string{}}
			modules[abs] = m
		}
		src := filepath.Join(dir, "prog"+strconv.Itoa(i)+".go")
		if err := os.WriteFile(src, []byte(p.src), 0o644); err != nil {
			t.Fatal(err)
		}
		pkg := "readme_line_" + strconv.Itoa(p.line)
		m.overlay[filepath.Join(abs, "zz_readme", pkg, "main.go")] = src
		m.pkgs = append(m.pkgs, "./zz_readme/"+pkg)
	}
	for abs, m := range modules {
		overlay, _ := json.Marshal(map[string]any{"Replace": m.overlay})
		of := filepath.Join(dir, "overlay-"+strconv.Itoa(len(overlay))+filepath.Base(abs)+".json")
		if err := os.WriteFile(of, overlay, 0o644); err != nil {
			t.Fatal(err)
		}
		// -o into a directory: go build writes a lone main package's
		// executable into the current directory otherwise.
		cmd := exec.Command(goTool, append([]string{"build", "-overlay", of, "-o", t.TempDir() + string(filepath.Separator)}, m.pkgs...)...)
		cmd.Dir = abs
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("README programs in %s (packages named after their line in README.md) do not build: %v\n%s", abs, err, out)
		}
	}
}

// The README's spotflowtest program is the package's Example, whose output
// go test checks, so the program cannot rot.
func TestREADMESimulatorProgramIsTheExample(t *testing.T) {
	var readme string
	for _, p := range readmePrograms(t) {
		if strings.Contains(p.src, "spotflowtest.NewServer") {
			readme = p.src
		}
	}
	if readme == "" {
		t.Fatal("README.md has no program using spotflowtest.NewServer")
	}
	b, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	example := string(b)
	const head = "\nfunc Example() {\n"
	i := strings.Index(example, head)
	if i < 0 {
		t.Fatal("example_test.go has no func Example()")
	}
	example = example[i+len(head):]
	example = example[:strings.Index(example, "\t// Output:")]
	const main = "\nfunc main() {\n"
	readme = readme[strings.Index(readme, main)+len(main):]
	readme = strings.TrimSuffix(readme, "}\n")
	if readme != example {
		t.Errorf("the body of main in README.md's spotflowtest program differs from Example in example_test.go:\nREADME:\n%s\nExample:\n%s", readme, example)
	}
}

const modulePath = "github.com/spotflow-go/spotflowhttp"

// What the README's quick start says of http.Client.Timeout: when it fires,
// net/http usually replaces the transport's error, so errors.As loses the
// *Error and its key; a context deadline always keeps them. Whether the
// replacement happens is a race inside net/http (the transport's answer can
// arrive before the client notices its timer), so the first half asks only
// that it happens to some of ten calls.
func TestREADMEClientTimeoutLosesTheError(t *testing.T) {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Minute}))
	defer sim.Close()
	call := func(client *http.Client, ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, sim.BaseURL()+"/payments",
			strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
		if err != nil {
			t.Error(err)
			return nil
		}
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Error("a response from a server that never answers")
		}
		return err
	}
	const n = 10
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		lost int
	)
	withTimeout := &http.Client{Transport: spotflowhttp.NewTransport(nil), Timeout: 100 * time.Millisecond}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var e *spotflowhttp.Error
			if err := call(withTimeout, context.Background()); !errors.As(err, &e) {
				mu.Lock()
				lost++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if lost == 0 {
		t.Errorf("with Client.Timeout, errors.As found the *Error in all %d calls: the README's warning is out of date", n)
	}

	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			var e *spotflowhttp.Error
			err := call(&http.Client{Transport: spotflowhttp.NewTransport(nil)}, ctx)
			if !errors.As(err, &e) || e.IdempotencyKey == "" || !e.Uncertain || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("with a context deadline: %v; want the *Error, uncertain, with its key, matching DeadlineExceeded", err)
			}
		}()
	}
	wg.Wait()
}
