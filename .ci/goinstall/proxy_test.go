package main

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"
)

func TestRunWritesEachVersionFromItsCommit(t *testing.T) {
	tr := newTestRepo(t)
	v1 := tr.commit()
	tr.write("sub/go.mod", subGoMod(testRoot+" "+v1))
	tr.write("sub/s.go", "package sub\n")
	v2 := tr.commit()
	tr.write("go.mod", "module "+testRoot+"\n\ngo 1.25.0\n\n// changed after v1\n")
	tr.write("cmd/c/go.mod", "module "+testRoot+"/cmd/c\n\ngo 1.25.0\n\nrequire "+testRoot+"/sub "+v2+"\n")
	tr.commit()
	out := filepath.Join(t.TempDir(), "proxy")
	var stdout, stderr bytes.Buffer
	if err := run(tr.dir, out, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing for a clean work tree", stderr.String())
	}
	base := filepath.Join(out, "example.com", "r", "@v", v1)
	gomod, err := os.ReadFile(base + ".mod")
	if err != nil || string(gomod) != "module "+testRoot+"\n\ngo 1.25.0\n" {
		t.Errorf(".mod = %q, %v; want the root's go.mod at that commit", gomod, err)
	}
	h, err := dirhash.HashZip(base+".zip", dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	if want := testRoot + " " + v1 + " " + h + " "; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout = %q, want a line starting %q", stdout.String(), want)
	}
	list, err := os.ReadFile(filepath.Join(out, "example.com", "r", "@v", "list"))
	if err != nil || !strings.Contains(string(list), v1+"\n") {
		t.Errorf("list = %q, %v; want it to hold %s", list, err, v1)
	}
	// A sub-module without a LICENSE gets the root's, as from the go command.
	z, err := zip.OpenReader(filepath.Join(out, "example.com", "r", "sub", "@v", v2+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	var names []string
	for _, f := range z.File {
		names = append(names, f.Name)
	}
	if want := testRoot + "/sub@" + v2 + "/LICENSE"; !strings.Contains(strings.Join(names, " "), want) {
		t.Errorf("sub-module zip holds %v, want %s among them", names, want)
	}
	if err := run(tr.dir, out, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("second run into the same directory: err = %v, want \"not empty\"", err)
	}
}

func TestRunWarnsThatUncommittedChangesAreNotServed(t *testing.T) {
	tr := newTestRepo(t)
	tr.commit()
	tr.write("r.go", "package r // changed\n")
	var stdout, stderr bytes.Buffer
	if err := run(tr.dir, filepath.Join(t.TempDir(), "p"), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "warning: uncommitted changes (r.go)") {
		t.Errorf("stderr = %q, want a warning naming r.go", stderr.String())
	}
}

func TestRunMakesHeadsVersionOnceWhenAnUncommittedGoModRequiresIt(t *testing.T) {
	tr := newTestRepo(t)
	tr.write("sub/go.mod", "module "+testRoot+"/sub\n\ngo 1.25.0\n")
	head := tr.commit()
	tr.write("sub/go.mod", subGoMod(testRoot+" "+head)) // not committed
	out := filepath.Join(t.TempDir(), "proxy")
	var stdout, stderr bytes.Buffer
	if err := run(tr.dir, out, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	list, err := os.ReadFile(filepath.Join(out, "example.com", "r", "@v", "list"))
	if err != nil || string(list) != head+"\n" {
		t.Errorf("list = %q, %v; want %s once", list, err, head)
	}
	if n := strings.Count(stdout.String(), "\n"); n != 1 {
		t.Errorf("stdout has %d lines, want 1: %q", n, stdout.String())
	}
}
