package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// modules returns the root module's path and the directories
// (slash-separated, "" for the root) of the repository's modules at
// commit: each go.mod whose module path is the root's joined with its
// directory, which is what makes it fetchable from this repository.
// Directories the go command never treats as packages (testdata, vendor,
// and those starting with "." or "_", such as .ci) are left out.
func (r *repo) modules(commit string) (string, []string, error) {
	f, err := r.goMod(commit, "")
	if err != nil {
		return "", nil, err
	}
	root := f.Module.Mod.Path
	names, err := r.files(commit)
	if err != nil {
		return "", nil, err
	}
	dirs := []string{""}
	for _, name := range names {
		dir, base := path.Split(name)
		dir = strings.TrimSuffix(dir, "/")
		if base != "go.mod" || dir == "" || ignoredDir(dir) {
			continue
		}
		if f, err := r.goMod(commit, dir); err == nil && f.Module.Mod.Path == root+"/"+dir {
			dirs = append(dirs, dir)
		}
	}
	return root, dirs, nil
}

// ignoredDir reports whether the go command ignores dir for ./... and
// module zips' packages.
func ignoredDir(dir string) bool {
	for _, elem := range strings.Split(dir, "/") {
		if elem == "testdata" || elem == "vendor" || strings.HasPrefix(elem, ".") || strings.HasPrefix(elem, "_") {
			return true
		}
	}
	return false
}

// goMod parses dir/go.mod at commit.
func (r *repo) goMod(commit, dir string) (*modfile.File, error) {
	name := path.Join(dir, "go.mod")
	data, ok := r.file(commit, name)
	if !ok {
		return nil, fmt.Errorf("commit %.12s has no %s", commit, name)
	}
	return parseGoMod(fmt.Sprintf("%s at commit %.12s", name, commit), data)
}

func parseGoMod(name string, data []byte) (*modfile.File, error) {
	f, err := modfile.Parse(name, data, nil)
	if err != nil {
		return nil, err
	}
	if f.Module == nil {
		return nil, fmt.Errorf("%s has no module line", name)
	}
	return f, nil
}

// requiredVersions returns every version of one of the repository's
// modules that a module of the repository requires, in its go.mod at HEAD
// or in the work tree, and every version those require in turn, except
// placeholders (see [placeholder]).
func requiredVersions(r *repo) ([]version, error) {
	root, dirs, err := r.modules(r.head)
	if err != nil {
		return nil, err
	}
	type need struct {
		mod module.Version
		by  string
	}
	var queue []need
	seen := map[module.Version]bool{}
	enqueue := func(f *modfile.File, by string) {
		for _, req := range f.Require {
			if inRepo(root, req.Mod.Path) && !seen[req.Mod] && !placeholder(f, req.Mod) {
				seen[req.Mod] = true
				queue = append(queue, need{req.Mod, by})
			}
		}
	}
	for _, dir := range dirs {
		f, err := r.goMod(r.head, dir)
		if err != nil {
			return nil, err
		}
		enqueue(f, path.Join(dir, "go.mod")+" at HEAD")
		name := filepath.Join(r.top, filepath.FromSlash(dir), "go.mod")
		if data, err := os.ReadFile(name); err == nil {
			by := path.Join(dir, "go.mod") + " in the work tree"
			f, err := parseGoMod(by, data)
			if err != nil {
				return nil, err
			}
			enqueue(f, by)
		}
	}
	var vs []version
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		v, f, err := r.resolve(root, n.mod)
		if err != nil {
			return nil, fmt.Errorf("%s requires %s %s, but %v", n.by, n.mod.Path, n.mod.Version, err)
		}
		vs = append(vs, v)
		enqueue(f, n.mod.String())
	}
	sortVersions(vs)
	return vs, nil
}

// placeholder reports whether m is a requirement at v0.0.0 that f
// replaces: a module that nothing outside the repository requires (bench)
// may require a sibling at this version, which no one can fetch, and
// reach it only through its replace directive.
func placeholder(f *modfile.File, m module.Version) bool {
	if m.Version != "v0.0.0" {
		return false
	}
	for _, rep := range f.Replace {
		if rep.Old.Path == m.Path && (rep.Old.Version == "" || rep.Old.Version == m.Version) {
			return true
		}
	}
	return false
}

// inRepo reports whether the module path p is the root module's or
// below it.
func inRepo(root, p string) bool { return p == root || strings.HasPrefix(p, root+"/") }

// resolve finds the commit that m names and returns it with m's go.mod
// there.
func (r *repo) resolve(root string, m module.Version) (version, *modfile.File, error) {
	if err := module.Check(m.Path, m.Version); err != nil {
		return version{}, nil, err
	}
	subdir := strings.TrimPrefix(strings.TrimPrefix(m.Path, root), "/")
	commit, err := r.commitOfVersion(subdir, m.Version)
	if err != nil {
		return version{}, nil, err
	}
	f, err := r.goMod(commit, subdir)
	if err != nil {
		return version{}, nil, err
	}
	if f.Module.Mod.Path != m.Path {
		return version{}, nil, fmt.Errorf("%s at commit %.12s is module %s", path.Join(subdir, "go.mod"), commit, f.Module.Mod.Path)
	}
	return version{mod: m, subdir: subdir, commit: commit, why: "required"}, f, nil
}

// commitOfVersion returns the commit that version v of the module in
// subdir names: a pseudo-version names a commit in the history of HEAD
// by its hash and committer time; a release version, the tag
// "subdir/v" (or "v" for the root module).
func (r *repo) commitOfVersion(subdir, v string) (string, error) {
	if !module.IsPseudoVersion(v) {
		tag := tagName(subdir, v)
		commit, ok := r.commitOfRev("refs/tags/" + tag)
		if !ok {
			return "", fmt.Errorf("it is neither a pseudo-version nor a tag (%s) of this repository", tag)
		}
		if !r.isAncestor(commit, r.head) {
			return "", fmt.Errorf("tag %s is not in the history of HEAD", tag)
		}
		return commit, nil
	}
	rev, err := module.PseudoVersionRev(v)
	if err != nil {
		return "", err
	}
	commit, ok := r.commitOfRev(rev)
	if !ok {
		return "", fmt.Errorf("%s is no commit of this repository", rev)
	}
	if !r.isAncestor(commit, r.head) {
		return "", fmt.Errorf("commit %s is not in the history of HEAD", rev)
	}
	if err := r.checkPseudoVersion(subdir, v, commit); err != nil {
		return "", err
	}
	return commit, nil
}

// checkPseudoVersion checks that the pseudo-version v carries commit's
// committer time, and that its base, if any, is a tag in commit's history.
func (r *repo) checkPseudoVersion(subdir, v, commit string) error {
	want, err := r.commitTime(commit)
	if err != nil {
		return err
	}
	if got, err := module.PseudoVersionTime(v); err != nil {
		return err
	} else if !got.Equal(want) {
		return fmt.Errorf("commit %.12s was made at %s (UTC), not %s", commit,
			want.Format("20060102150405"), got.Format("20060102150405"))
	}
	base, err := module.PseudoVersionBase(v)
	if err != nil || base == "" {
		return err
	}
	tag := tagName(subdir, base)
	tagged, ok := r.commitOfRev("refs/tags/" + tag)
	if !ok || !r.isAncestor(tagged, commit) {
		return fmt.Errorf("its base version %s is not a tag (%s) in the history of commit %.12s", base, tag, commit)
	}
	return nil
}

// tagName returns the tag of version v of the module in subdir.
func tagName(subdir, v string) string {
	if subdir == "" {
		return v
	}
	return subdir + "/" + v
}

// headVersions returns the root module and every command module
// (cmd/*) at the pseudo-version of HEAD: the versions CI installs.
func headVersions(r *repo) ([]version, error) {
	root, dirs, err := r.modules(r.head)
	if err != nil {
		return nil, err
	}
	t, err := r.commitTime(r.head)
	if err != nil {
		return nil, err
	}
	var vs []version
	for _, dir := range dirs {
		if dir != "" && !strings.HasPrefix(dir, "cmd/") {
			continue
		}
		p := path.Join(root, dir)
		_, pathMajor, _ := module.SplitPathVersion(p)
		major := module.PathMajorPrefix(pathMajor)
		base, err := r.latestTag(dir, major)
		if err != nil {
			return nil, err
		}
		v := module.PseudoVersion(major, base, t, r.head[:12])
		vs = append(vs, version{mod: module.Version{Path: p, Version: v}, subdir: dir, commit: r.head, why: "head"})
	}
	sortVersions(vs)
	return vs, nil
}

// latestTag returns the highest release of the module in dir with the
// given major version ("" for v0 or v1) tagged in the history of HEAD,
// which is the base of HEAD's pseudo-version; "" if there is none.
func (r *repo) latestTag(dir, major string) (string, error) {
	prefix := tagName(dir, "v")
	tags, err := r.tags(prefix)
	if err != nil {
		return "", err
	}
	best := ""
	for _, tag := range tags {
		v := strings.TrimPrefix(tag, tagName(dir, ""))
		if !semver.IsValid(v) || semver.Build(v) != "" || !sameMajor(v, major) {
			continue
		}
		if commit, ok := r.commitOfRev("refs/tags/" + tag); ok && r.isAncestor(commit, r.head) && semver.Compare(v, best) > 0 {
			best = v
		}
	}
	return best, nil
}

// sameMajor reports whether v belongs to the major version major, ""
// standing for v0 and v1.
func sameMajor(v, major string) bool {
	if major == "" {
		return semver.Major(v) == "v0" || semver.Major(v) == "v1"
	}
	return semver.Major(v) == major
}
