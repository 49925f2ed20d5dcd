package main

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// proxy writes a module proxy in the layout the go command reads from
// GOPROXY=file://dir: dir/<escaped path>/@v/list, and <escaped
// version>.info, .mod and .zip for each version. It is not safe for
// concurrent use.
type proxy struct {
	dir      string
	repo     *repo
	versions map[string][]string // module path -> versions made
}

// newProxy prepares dir, which must not exist or be empty, so that no
// version left from an earlier run can be served.
func newProxy(dir string, r *repo) (*proxy, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &proxy{dir: dir, repo: r, versions: map[string][]string{}}, nil
}

// add makes v's zip from its commit, its .mod from the go.mod in that zip
// and its .info from the commit's time, and returns the zip's go.sum hash.
func (p *proxy) add(v version) (string, error) {
	escPath, err := module.EscapePath(v.mod.Path)
	if err != nil {
		return "", err
	}
	escVersion, err := module.EscapeVersion(v.mod.Version)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(p.dir, filepath.FromSlash(escPath), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(dir, escVersion)
	if err := p.writeZip(base+".zip", v); err != nil {
		return "", fmt.Errorf("%s@%s from commit %.12s: %v", v.mod.Path, v.mod.Version, v.commit, err)
	}
	goMod, err := zippedGoMod(base+".zip", v.mod)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(base+".mod", goMod, 0o644); err != nil {
		return "", err
	}
	t, err := p.repo.commitTime(v.commit)
	if err != nil {
		return "", err
	}
	info, err := json.Marshal(struct{ Version, Time string }{v.mod.Version, t.Format("2006-01-02T15:04:05Z")})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(base+".info", info, 0o644); err != nil {
		return "", err
	}
	p.versions[v.mod.Path] = append(p.versions[v.mod.Path], v.mod.Version)
	return dirhash.HashZip(base+".zip", dirhash.Hash1)
}

// writeZip creates name holding v's module zip, as the go command makes
// it from version control (the root's LICENSE is added to a sub-module
// that has none).
func (p *proxy) writeZip(name string, v version) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	err = modzip.CreateFromVCS(f, v.mod, p.repo.plain, v.commit, v.subdir)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// zippedGoMod returns the go.mod in the module zip name, which is what a
// proxy must serve as the version's .mod.
func zippedGoMod(name string, m module.Version) ([]byte, error) {
	z, err := zip.OpenReader(name)
	if err != nil {
		return nil, err
	}
	defer z.Close()
	want := m.Path + "@" + m.Version + "/go.mod"
	for _, f := range z.File {
		if f.Name != want {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, modzip.MaxGoMod))
	}
	return nil, fmt.Errorf("%s has no %s", name, want)
}

// writeLists writes each module's @v/list, in semantic version order.
func (p *proxy) writeLists() error {
	for path, vs := range p.versions {
		escPath, err := module.EscapePath(path)
		if err != nil {
			return err
		}
		semver.Sort(vs)
		list := filepath.Join(p.dir, filepath.FromSlash(escPath), "@v", "list")
		if err := os.WriteFile(list, []byte(strings.Join(vs, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
