package boltjournal_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// openChildEnv, set to a list of files (separated by the OS's path list
// separator), makes the test binary a child that opens each file with
// OpenReadOnly and then Open, prints what each gave, and exits: a crash in
// it (a panic, "fatal error: fault") cannot take the test process down with
// it, and shows as the child's exit status.
const openChildEnv = "BOLTJOURNAL_OPEN_CHILD"

// openChild is the child's work; it returns the exit status.
func openChild(paths string) int {
	for i, path := range filepath.SplitList(paths) {
		for _, o := range []struct {
			name string
			open func(string) (*boltjournal.Journal, error)
		}{{"readonly", boltjournal.OpenReadOnly}, {"open", boltjournal.Open}} {
			j, err := o.open(path)
			if err != nil {
				fmt.Printf("%d %s err damaged=%t %s\n", i, o.name, errors.Is(err, boltjournal.ErrDamaged), err)
				continue
			}
			es, err := j.Pending(context.Background())
			j.Close()
			if err != nil {
				fmt.Printf("%d %s pending-err damaged=%t %s\n", i, o.name, errors.Is(err, boltjournal.ErrDamaged), err)
				continue
			}
			fmt.Printf("%d %s ok %d\n", i, o.name, len(es))
		}
	}
	return 0
}

// childResult is what the child said of one way of opening one file.
type childResult struct {
	ok      bool // opened, Pending worked
	n       int  // entries Pending gave
	damaged bool // the error wraps ErrDamaged
	line    string
}

// openInChild opens each of paths in child processes and returns what each
// way of opening gave for each: results[i][0] read-only, [1] read-write. A
// child that crashes fails the test, naming the file it was opening, and
// the files after it are opened in a new child.
func openInChild(t *testing.T, paths ...string) (results [][2]childResult) {
	t.Helper()
	results = make([][2]childResult, len(paths))
	for done := 0; done < len(paths); {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), openChildEnv+"="+strings.Join(paths[done:], string(os.PathListSeparator)))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		seen := parseChild(out.String(), results[done:])
		if err == nil && seen == len(paths)-done {
			return results
		}
		t.Errorf("the child opening %s crashed (%v):\n%s", paths[done+seen], err, firstLines(errb.String(), 12))
		done += seen + 1
	}
	return results
}

// parseChild fills results from the child's output and returns how many
// files it gave both results for.
func parseChild(out string, results [][2]childResult) int {
	seen := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		i, err := strconv.Atoi(f[0])
		if err != nil || i >= len(results) {
			continue
		}
		r := childResult{line: strings.Join(f[1:], " ")}
		switch f[2] {
		case "ok":
			r.ok = true
			r.n, _ = strconv.Atoi(f[3])
		case "err", "pending-err":
			r.damaged = f[3] == "damaged=true"
		}
		if f[1] == "open" {
			results[i][1] = r
			seen = i + 1
		} else {
			results[i][0] = r
		}
	}
	return seen
}

func firstLines(s string, n int) string {
	ls := strings.SplitN(s, "\n", n+1)
	return strings.Join(ls[:min(n, len(ls))], "\n")
}

// fixture is a journal file holding entries, and what bbolt says of it.
type fixture struct {
	data     []byte
	entries  []spotflowhttp.Entry // what Pending gives
	pageSize int
	pages    int    // high water mark: the pages the file must hold
	root     uint64 // the entries bucket's root page
	overflow int    // pages that are another page's overflow
}

var (
	fixtureOnce sync.Once
	theFixture  fixture
	fixtureErr  error
)

// journalFixture returns a journal of 300 pending entries, every tenth
// with a 3 KiB body (so some leaves span overflow pages), after 50 more
// were recorded and settled (so the freelist lists freed pages). It is made
// once per test binary.
func journalFixture(t *testing.T) fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		theFixture, fixtureErr = makeFixture(filepath.Join(os.TempDir(), fmt.Sprintf("boltjournal-fixture-%d.db", os.Getpid())))
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return theFixture
}

func makeFixture(path string) (fixture, error) {
	defer os.Remove(path)
	j, err := boltjournal.Open(path)
	if err != nil {
		return fixture{}, err
	}
	ctx := context.Background()
	for i := range 350 {
		e := journaltest.Sample(fmt.Sprintf("key-%04d", i), time.Duration(i)*time.Second)
		if i%10 == 0 {
			e.Body = bytes.Repeat([]byte{'x'}, 3<<10)
		}
		if err := j.Record(ctx, e); err != nil {
			j.Close()
			return fixture{}, err
		}
	}
	for i := 300; i < 350; i++ {
		if ok, err := j.Settle(ctx, fmt.Sprintf("key-%04d", i), "call-1"); !ok || err != nil {
			j.Close()
			return fixture{}, fmt.Errorf("settle: %v %v", ok, err)
		}
	}
	var fx fixture
	fx.entries, err = j.Pending(ctx)
	j.Close()
	if err != nil {
		return fixture{}, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		return fixture{}, err
	}
	err = db.View(func(tx *bolt.Tx) error {
		fx.pageSize = db.Info().PageSize
		fx.pages = int(tx.Size()) / fx.pageSize
		fx.root = uint64(tx.Bucket([]byte("entries")).Root())
		for id := 2; id < fx.pages; id++ {
			if p, err := tx.Page(id); err == nil && p != nil {
				fx.overflow += p.OverflowCount
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		return fixture{}, err
	}
	fx.data, err = os.ReadFile(path)
	return fx, err
}

// write puts data in a new file in dir.
func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeCases writes each damaged file of cases into a new directory, named
// after its case, and returns the names and the paths in the same order.
func writeCases(t *testing.T, cases map[string][]byte) (names, paths []string) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range cases {
		names = append(names, name)
		paths = append(paths, write(t, dir, strings.ReplaceAll(name, " ", "-")+".db", data))
	}
	return names, paths
}

// damage returns a copy of data with f applied.
func damage(data []byte, f func([]byte) []byte) []byte {
	return f(bytes.Clone(data))
}

func fill(b []byte, rnd *rand.Rand) {
	for i := range b {
		if rnd == nil {
			b[i] = 0
		} else {
			b[i] = byte(rnd.Uint32())
		}
	}
}

// TestOpenDamagedFileFailsCleanly: a file damaged in each of the ways
// a full disk, a partial restore or a stray write leaves one makes Open and
// OpenReadOnly return an error wrapping ErrDamaged that names the file and
// says what to do, in a child process that exits normally: never a panic,
// never a memory fault.
func TestOpenDamagedFileFailsCleanly(t *testing.T) {
	fx := journalFixture(t)
	if fx.overflow == 0 || fx.pages < 10 || fx.root == 0 {
		t.Fatalf("fixture has %d pages, %d overflow pages, entries root %d: it should exercise more", fx.pages, fx.overflow, fx.root)
	}
	ps := fx.pageSize
	rnd := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]byte{
		"both meta pages zeroed": damage(fx.data, func(b []byte) []byte { fill(b[:2*ps], nil); return b }),
		"both meta pages garbled": damage(fx.data, func(b []byte) []byte {
			fill(b[16:16+64], rnd)
			fill(b[ps+16:ps+16+64], rnd)
			return b
		}),
		"random bytes, 64 KiB":    damage(make([]byte, 64<<10), func(b []byte) []byte { fill(b, rnd); return b }),
		"random bytes, 100":       damage(make([]byte, 100), func(b []byte) []byte { fill(b, rnd); return b }),
		"a text file":             []byte("this is not a journal\n"),
		"cut to half":             fx.data[:len(fx.data)/2],
		"cut to three pages":      fx.data[:3*ps],
		"cut to one page":         fx.data[:ps],
		"entries root zeroed":     damage(fx.data, func(b []byte) []byte { fill(b[int(fx.root)*ps:int(fx.root+1)*ps], nil); return b }),
		"entries root garbled":    damage(fx.data, func(b []byte) []byte { fill(b[int(fx.root)*ps+16:int(fx.root+1)*ps], rnd); return b }),
		"cut to one byte short":   fx.data[:fx.pages*ps-1],
		"cut inside the 2nd page": fx.data[:ps+ps/2],
		// Every entry's JSON broken, each page sound: damage only the
		// entries show (Open's pass over them, Pending).
		"entries not JSON": bytes.ReplaceAll(fx.data, []byte(`"url":"`), []byte(`"url":!`)),
	}
	names, paths := writeCases(t, cases)
	for i, res := range openInChild(t, paths...) {
		for _, r := range res {
			assertDamagedError(t, names[i], r, paths[i])
		}
	}
}

func assertDamagedError(t *testing.T, name string, r childResult, path string) {
	t.Helper()
	if !r.damaged {
		t.Errorf("%s: child: %q; want an error wrapping ErrDamaged", name, r.line)
		return
	}
	for _, want := range []string{path, "damaged journal", "move it aside", "spotflow-journal salvage -file " + path} {
		if !strings.Contains(r.line, want) {
			t.Errorf("%s: error %q does not say %q", name, r.line, want)
		}
	}
}

// TestOpenTruncatedAtEveryPage: a journal cut at any page boundary opens
// in a child that exits normally: cut below the pages its meta counts, it
// is damaged; cut only after them (bbolt grows files ahead of use), it
// opens with every entry.
func TestOpenTruncatedAtEveryPage(t *testing.T) {
	fx := journalFixture(t)
	total := len(fx.data) / fx.pageSize
	dir := t.TempDir()
	var paths []string
	for k := 1; k < total; k++ {
		paths = append(paths, write(t, dir, fmt.Sprintf("cut-%d.db", k), fx.data[:k*fx.pageSize]))
	}
	for i, res := range openInChild(t, paths...) {
		k := i + 1
		name := fmt.Sprintf("cut to %d pages", k)
		for _, r := range res {
			if k < fx.pages {
				assertDamagedError(t, name, r, paths[i])
			} else if !r.ok || r.n != len(fx.entries) {
				t.Errorf("%s, after the last page in use: %q; want all %d entries", name, r.line, len(fx.entries))
			}
		}
	}
}

// TestOpenOneMetaPageDamaged: with one meta page zeroed or garbled, bbolt
// uses the other (its recovery from a crash while a meta page was being
// written: that transaction had not returned, so nothing it wrote had been
// acted on). Open succeeds with the entries of that transaction, in a
// child that exits normally.
func TestOpenOneMetaPageDamaged(t *testing.T) {
	fx := journalFixture(t)
	ps := fx.pageSize
	rnd := rand.New(rand.NewPCG(3, 4))
	cases := map[string][]byte{
		"meta 0 zeroed":  damage(fx.data, func(b []byte) []byte { fill(b[:ps], nil); return b }),
		"meta 1 zeroed":  damage(fx.data, func(b []byte) []byte { fill(b[ps:2*ps], nil); return b }),
		"meta 0 garbled": damage(fx.data, func(b []byte) []byte { fill(b[16:80], rnd); return b }),
		"meta 1 garbled": damage(fx.data, func(b []byte) []byte { fill(b[ps+16:ps+80], rnd); return b }),
	}
	names, paths := writeCases(t, cases)
	for i, res := range openInChild(t, paths...) {
		for _, r := range res {
			// The transaction before the last settled one entry or none:
			// 300 or 301 entries.
			if !r.ok || r.n < len(fx.entries) || r.n > len(fx.entries)+1 {
				t.Errorf("%s: %q; want the entries of the previous transaction (%d or %d)", names[i], r.line, len(fx.entries), len(fx.entries)+1)
			}
		}
	}
}
