package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// repo is the git repository goinstall reads. It is not safe for
// concurrent use (it runs git commands one at a time anyway).
type repo struct {
	top  string // the work tree's top directory
	head string // HEAD's full commit hash
	// plain is a temporary repository whose .git is a directory and whose
	// objects are this repository's (through objects/info/alternates):
	// zip.CreateFromVCS accepts only a directory whose .git is the git
	// directory, which a linked work tree's (a file) is not.
	plain string
}

// openRepo opens the repository holding dir. It refuses a shallow
// clone, whose history lacks the commits that requirements name.
func openRepo(dir string) (*repo, error) {
	top, err := git(dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("%s is not in a git work tree: %v", dir, err)
	}
	r := &repo{top: top}
	if shallow, err := r.git("rev-parse", "--is-shallow-repository"); err != nil {
		return nil, err
	} else if shallow == "true" {
		return nil, fmt.Errorf("%s is a shallow clone: the commits that requirements name may be missing", top)
	}
	if r.head, err = r.git("rev-parse", "--verify", "HEAD^{commit}"); err != nil {
		return nil, fmt.Errorf("HEAD is no commit (nothing committed yet?): %v", err)
	}
	common, err := r.git("rev-parse", "--path-format=absolute", "--git-common-dir")
	if err != nil {
		return nil, err
	}
	if r.plain, err = os.MkdirTemp("", "goinstall-git-"); err != nil {
		return nil, err
	}
	if _, err := git(r.plain, "init", "-q"); err != nil {
		r.close()
		return nil, err
	}
	alternates := filepath.Join(r.plain, ".git", "objects", "info", "alternates")
	if err := os.WriteFile(alternates, []byte(filepath.Join(common, "objects")+"\n"), 0o644); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// close removes the temporary repository.
func (r *repo) close() { os.RemoveAll(r.plain) }

// dirty lists the paths git status reports as changed or untracked.
func (r *repo) dirty() ([]string, error) {
	out, err := r.git("status", "--porcelain")
	if err != nil || out == "" {
		return nil, err
	}
	var paths []string
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 3 {
			paths = append(paths, line[3:])
		}
	}
	return paths, nil
}

// commitOfRev returns the full hash of the commit rev names, if any.
func (r *repo) commitOfRev(rev string) (string, bool) {
	c, err := r.git("rev-parse", "-q", "--verify", rev+"^{commit}")
	return c, err == nil
}

// isAncestor reports whether commit is in the history of descendant.
func (r *repo) isAncestor(commit, descendant string) bool {
	_, err := r.git("merge-base", "--is-ancestor", commit, descendant)
	return err == nil
}

// commitTime returns commit's committer time, which is the time a
// pseudo-version of it carries.
func (r *repo) commitTime(commit string) (time.Time, error) {
	out, err := r.git("log", "-1", "--format=%ct", commit)
	if err != nil {
		return time.Time{}, err
	}
	sec, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("commit %.12s: committer time %q: %v", commit, out, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// file returns the content of name (slash-separated, from the top) at
// commit, and whether it exists there.
func (r *repo) file(commit, name string) ([]byte, bool) {
	cmd := exec.Command("git", "cat-file", "blob", commit+":"+name)
	cmd.Dir = r.top
	out, err := cmd.Output()
	return out, err == nil
}

// files lists the paths of the files at commit.
func (r *repo) files(commit string) ([]string, error) {
	out, err := r.git("ls-tree", "-r", "--name-only", "-z", commit)
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSuffix(out, "\x00"), "\x00"), nil
}

// tags lists the tags whose names start with prefix.
func (r *repo) tags(prefix string) ([]string, error) {
	out, err := r.git("tag", "--list", prefix+"*")
	if err != nil || out == "" {
		return nil, err
	}
	return strings.Split(out, "\n"), nil
}

func (r *repo) git(args ...string) (string, error) { return git(r.top, args...) }

// git runs git in dir and returns its output with the final newline
// trimmed, or an error carrying what git wrote on stderr.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimRight(string(out), "\n"), nil
}
