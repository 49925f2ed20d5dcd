package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
)

const testRoot = "example.com/r"

// testRepo is a git repository in a temporary directory whose commits
// are made at chosen times, so that their pseudo-versions are known.
type testRepo struct {
	t   *testing.T
	dir string
	now time.Time
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	tr := &testRepo{t: t, dir: t.TempDir(), now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	tr.git("init", "-q", "-b", "main")
	tr.write("go.mod", "module "+testRoot+"\n\ngo 1.25.0\n")
	tr.write("r.go", "package r\n")
	tr.write("LICENSE", "test licence\n")
	return tr
}

func (tr *testRepo) write(name, content string) {
	tr.t.Helper()
	p := filepath.Join(tr.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

// commit commits everything a minute after the previous commit and
// returns its pseudo-version.
func (tr *testRepo) commit() string {
	tr.t.Helper()
	tr.now = tr.now.Add(time.Minute)
	date := tr.now.Format(time.RFC3339)
	tr.git("add", "-A")
	cmd := exec.Command("git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", "c")
	cmd.Dir = tr.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	if out, err := cmd.CombinedOutput(); err != nil {
		tr.t.Fatalf("git commit: %v: %s", err, out)
	}
	return module.PseudoVersion("", "", tr.now, tr.git("rev-parse", "HEAD")[:12])
}

func (tr *testRepo) git(args ...string) string {
	tr.t.Helper()
	out, err := git(tr.dir, args...)
	if err != nil {
		tr.t.Fatal(err)
	}
	return out
}

func (tr *testRepo) open() *repo {
	tr.t.Helper()
	r, err := openRepo(tr.dir)
	if err != nil {
		tr.t.Fatal(err)
	}
	tr.t.Cleanup(r.close)
	return r
}

func subGoMod(requires ...string) string {
	return "module " + testRoot + "/sub\n\ngo 1.25.0\n\nrequire (\n\t" + strings.Join(requires, "\n\t") + "\n)\n"
}

func TestRequiredVersionsFollowsRequirementsOfRequiredVersions(t *testing.T) {
	tr := newTestRepo(t)
	v1 := tr.commit()
	tr.write("sub/go.mod", subGoMod(testRoot+" "+v1))
	tr.write("sub/s.go", "package sub\n")
	v2 := tr.commit()
	// At HEAD, cmd/c requires sub at v2, which requires the root at v1,
	// which nothing at HEAD requires: sub now requires the root at v2.
	tr.write("cmd/c/go.mod", "module "+testRoot+"/cmd/c\n\ngo 1.25.0\n\nrequire "+testRoot+"/sub "+v2+"\n")
	tr.write("sub/go.mod", subGoMod(testRoot+" "+v2))
	tr.commit()
	vs, err := requiredVersions(tr.open())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.mod.String())
	}
	want := []string{testRoot + "@" + v1, testRoot + "@" + v2, testRoot + "/sub@" + v2}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("required versions = %v, want %v", got, want)
	}
}

func TestRequiredVersionsRejectsAPseudoVersionWithAnotherTime(t *testing.T) {
	tr := newTestRepo(t)
	v1 := tr.commit()
	rev, _ := module.PseudoVersionRev(v1)
	wrong := module.PseudoVersion("", "", tr.now.Add(time.Second), rev)
	tr.write("sub/go.mod", subGoMod(testRoot+" "+wrong))
	tr.commit()
	_, err := requiredVersions(tr.open())
	if err == nil || !strings.Contains(err.Error(), "was made at 20261201100100 (UTC), not 20261201100101") {
		t.Fatalf("err = %v, want one naming the commit's time", err)
	}
}

func TestRequiredVersionsRejectsACommitNotInTheHistoryOfHead(t *testing.T) {
	tr := newTestRepo(t)
	tr.commit()
	tr.git("checkout", "-q", "-b", "side")
	tr.write("r2.go", "package r\n")
	side := tr.commit()
	tr.git("checkout", "-q", "main")
	tr.write("sub/go.mod", subGoMod(testRoot+" "+side))
	tr.commit()
	_, err := requiredVersions(tr.open())
	if err == nil || !strings.Contains(err.Error(), "not in the history of HEAD") {
		t.Fatalf("err = %v, want one saying the commit is not in HEAD's history", err)
	}
}

func TestRequiredVersionsRejectsAVersionThatIsNeitherACommitNorATag(t *testing.T) {
	tr := newTestRepo(t)
	tr.commit()
	tr.write("sub/go.mod", subGoMod(testRoot+" v1.2.3"))
	tr.commit()
	_, err := requiredVersions(tr.open())
	if err == nil || !strings.Contains(err.Error(), "neither a pseudo-version nor a tag (v1.2.3)") {
		t.Fatalf("err = %v, want one naming the missing tag", err)
	}
	tr.git("tag", "v1.2.3", "HEAD~1")
	if _, err := requiredVersions(tr.open()); err != nil {
		t.Fatalf("with the tag: %v", err)
	}
}

func TestRequiredVersionsSkipsAReplacedPlaceholderOnly(t *testing.T) {
	tr := newTestRepo(t)
	tr.commit()
	tr.write("sub/go.mod", subGoMod(testRoot+" v0.0.0")+"\nreplace "+testRoot+" => ../\n")
	tr.commit()
	if vs, err := requiredVersions(tr.open()); err != nil || len(vs) != 0 {
		t.Fatalf("replaced v0.0.0: versions %v, err %v; want none and no error", vs, err)
	}
	tr.write("sub/go.mod", subGoMod(testRoot+" v0.0.0"))
	tr.commit()
	if _, err := requiredVersions(tr.open()); err == nil {
		t.Fatal("v0.0.0 without a replace: no error")
	}
}

func TestHeadVersionsAreTheRootAndCommandModulesAtHead(t *testing.T) {
	tr := newTestRepo(t)
	tr.write("sub/go.mod", subGoMod())
	tr.write("cmd/c/go.mod", "module "+testRoot+"/cmd/c\n\ngo 1.25.0\n")
	tr.write(".ci/tool/go.mod", "module "+testRoot+"/.ci/tool\n\ngo 1.25.0\n")
	head := tr.commit()
	vs, err := headVersions(tr.open())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, v.mod.String())
	}
	want := []string{testRoot + "@" + head, testRoot + "/cmd/c@" + head}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("head versions = %v, want %v", got, want)
	}
}

func TestHeadVersionIsBasedOnTheLatestTag(t *testing.T) {
	tr := newTestRepo(t)
	tr.commit()
	tr.git("tag", "v1.4.0")
	tr.write("r2.go", "package r\n")
	tr.commit()
	vs, err := headVersions(tr.open())
	if err != nil {
		t.Fatal(err)
	}
	if v := vs[0].mod.Version; !strings.HasPrefix(v, "v1.4.1-0.") {
		t.Errorf("HEAD's version = %s, want v1.4.1-0.<time>-<hash>", v)
	}
}
