// Command goinstall writes a file-system module proxy (GOPROXY=file://DIR)
// made from this git repository, so that CI can run `go install
// module@version` of the repository's commands exactly as a user would,
// although none of its modules is on a public proxy.
//
// Usage:
//
//	goinstall -o DIR [-C DIR]
//
// The proxy holds:
//
//   - every version of one of this repository's modules that a module of
//     the repository requires (in the go.mod files of HEAD, and of the work
//     tree, so that a requirement just moved and not yet committed can be
//     tidied against it), and every version those versions require in turn;
//     each must be a pseudo-version of a commit in the history of HEAD, with
//     that commit's committer time in UTC, or a release tag;
//   - the root module and every command module (cmd/*/go.mod) at the
//     pseudo-version of HEAD itself.
//
// Each version is made from its commit by [zip.CreateFromVCS], which builds
// the module zip as the go command does from version control, so its go.sum
// hash is the one a user would get from a public proxy. Uncommitted changes
// are never in the proxy: with a dirty work tree goinstall warns that HEAD,
// not the work tree, is what it serves.
//
// goinstall prints one line per version it made, on stdout:
//
//	module version h1:hash commit why
//
// where why is "head" for HEAD's versions and "required" otherwise.
// Errors go to stderr; the exit status is 2 for bad usage, 1 otherwise.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

func main() {
	fs := flag.NewFlagSet("goinstall", flag.ContinueOnError)
	out := fs.String("o", "", "directory to write the module proxy into (must not exist, or be empty)")
	dir := fs.String("C", ".", "a directory inside the git repository")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: goinstall -o DIR [-C DIR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "goinstall: usage: goinstall -o DIR [-C DIR]")
		os.Exit(2)
	}
	if err := run(*dir, *out, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "goinstall:", err)
		os.Exit(1)
	}
}

// run writes the proxy for the repository holding dir into out and lists
// what it made on stdout.
func run(dir, out string, stdout, stderr io.Writer) error {
	r, err := openRepo(dir)
	if err != nil {
		return err
	}
	defer r.close()
	if dirty, err := r.dirty(); err != nil {
		return err
	} else if len(dirty) > 0 {
		fmt.Fprintf(stderr, "goinstall: warning: uncommitted changes (%s); the proxy serves HEAD, commit %.12s, as committed\n",
			summarize(dirty, 3), r.head)
	}
	versions, err := requiredVersions(r)
	if err != nil {
		return err
	}
	heads, err := headVersions(r)
	if err != nil {
		return err
	}
	p, err := newProxy(out, r)
	if err != nil {
		return err
	}
	made := map[module.Version]bool{}
	for _, v := range append(heads, versions...) {
		if made[v.mod] { // HEAD's version, required by an uncommitted go.mod
			continue
		}
		made[v.mod] = true
		h, err := p.add(v)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s %s %.12s %s\n", v.mod.Path, v.mod.Version, h, v.commit, v.why)
	}
	return p.writeLists()
}

// summarize joins the first n of names, and says how many more there are.
func summarize(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// sortVersions orders vs by module path, then by semantic version.
func sortVersions(vs []version) {
	sort.Slice(vs, func(i, j int) bool {
		if vs[i].mod.Path != vs[j].mod.Path {
			return vs[i].mod.Path < vs[j].mod.Path
		}
		return semver.Compare(vs[i].mod.Version, vs[j].mod.Version) < 0
	})
}

// version is one version of one of the repository's modules, with the
// commit it is made from.
type version struct {
	mod    module.Version
	subdir string // the module's directory in the repository, "" for the root
	commit string // full hash
	why    string // "head" or "required"
}
