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

// openChildEnv, set to a file's path, makes the test binary a child that
// opens that file with OpenReadOnly and then Open, prints what each gave,
// and exits: a crash in it (a panic, "fatal error: fault") cannot take the
// test process down with it, and shows as the child's exit status.
const openChildEnv = "BOLTJOURNAL_OPEN_CHILD"

// openChild is the child's work; it returns the exit status.
func openChild(path string) int {
	for _, o := range []struct {
		name string
		open func(string) (*boltjournal.Journal, error)
	}{{"readonly", boltjournal.OpenReadOnly}, {"open", boltjournal.Open}} {
		j, err := o.open(path)
		if err != nil {
			fmt.Printf("%s err damaged=%t %s\n", o.name, errors.Is(err, boltjournal.ErrDamaged), err)
			continue
		}
		es, err := j.Pending(context.Background())
		j.Close()
		if err != nil {
			fmt.Printf("%s pending-err %s\n", o.name, err)
			continue
		}
		fmt.Printf("%s ok %d\n", o.name, len(es))
	}
	return 0
}

// childResult is what the child said of one way of opening.
type childResult struct {
	ok      bool // opened, Pending worked
	n       int  // entries Pending gave
	damaged bool // the error wraps ErrDamaged
	line    string
}

// openInChild runs the child on path; a child that does not exit 0 with
// both lines printed fails the test.
func openInChild(t *testing.T, path string) (readOnly, rw childResult) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), openChildEnv+"="+path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("the child opening %s crashed (%v):\n%s%s", filepath.Base(path), err, out.String(), firstLines(errb.String(), 40))
	}
	res := map[string]childResult{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		r := childResult{line: l}
		switch f[1] {
		case "ok":
			r.ok = true
			r.n, _ = strconv.Atoi(f[2])
		case "err":
			r.damaged = f[2] == "damaged=true"
		}
		res[f[0]] = r
	}
	if len(res) != 2 {
		t.Fatalf("the child printed %q, want a line for each way of opening", out.String())
	}
	return res["readonly"], res["open"]
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

// write puts data in a new file in t's temporary directory.
func write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			path := write(t, "journal.db", data)
			ro, rw := openInChild(t, path)
			for _, r := range []childResult{ro, rw} {
				assertDamagedError(t, r, path)
			}
		})
	}
}

func assertDamagedError(t *testing.T, r childResult, path string) {
	t.Helper()
	if !r.damaged {
		t.Errorf("child: %s; want an error wrapping ErrDamaged", r.line)
		return
	}
	for _, want := range []string{path, "damaged journal", "move it aside", "spotflow-journal salvage -file " + path} {
		if !strings.Contains(r.line, want) {
			t.Errorf("error %q does not say %q", r.line, want)
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
	for k := 1; k < total; k++ {
		t.Run(fmt.Sprintf("pages=%d", k), func(t *testing.T) {
			path := write(t, "journal.db", fx.data[:k*fx.pageSize])
			ro, rw := openInChild(t, path)
			for _, r := range []childResult{ro, rw} {
				if k < fx.pages {
					assertDamagedError(t, r, path)
				} else if !r.ok || r.n != len(fx.entries) {
					t.Errorf("cut after the last page in use: %s; want all %d entries", r.line, len(fx.entries))
				}
			}
		})
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
	for name, data := range map[string][]byte{
		"meta 0 zeroed":  damage(fx.data, func(b []byte) []byte { fill(b[:ps], nil); return b }),
		"meta 1 zeroed":  damage(fx.data, func(b []byte) []byte { fill(b[ps:2*ps], nil); return b }),
		"meta 0 garbled": damage(fx.data, func(b []byte) []byte { fill(b[16:80], rnd); return b }),
		"meta 1 garbled": damage(fx.data, func(b []byte) []byte { fill(b[ps+16:ps+80], rnd); return b }),
	} {
		t.Run(name, func(t *testing.T) {
			path := write(t, "journal.db", data)
			ro, rw := openInChild(t, path)
			for _, r := range []childResult{ro, rw} {
				// The transaction before the last settled one entry or
				// none: 300 or 301 entries.
				if !r.ok || r.n < len(fx.entries) || r.n > len(fx.entries)+1 {
					t.Errorf("%s; want the entries of the previous transaction (%d or %d)", r.line, len(fx.entries), len(fx.entries)+1)
				}
			}
		})
	}
}
