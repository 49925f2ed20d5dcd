package boltjournal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaltest"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(openChildEnv); path != "" {
		os.Exit(openChild(path))
	}
	if path := os.Getenv(holdChildEnv); path != "" {
		os.Exit(holdChild(path))
	}
	goleak.VerifyTestMain(m)
}

func open(t *testing.T) *boltjournal.Journal {
	t.Helper()
	j, err := boltjournal.Open(filepath.Join(t.TempDir(), "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func TestJournal(t *testing.T) {
	journaltest.Run(t, func(t *testing.T) spotflowhttp.Journal { return open(t) })
}

// TestReopenFreesEntries: entries held by a process that is gone are free
// once the file is opened again, and nothing else about them changes.
func TestReopenFreesEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := boltjournal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	held := journaltest.Sample("k1", 0)
	held.Until = time.Now().Add(time.Hour)
	free := journaltest.Sample("k2", time.Second) // Until long past
	for _, e := range []spotflowhttp.Entry{held, free} {
		if err := j.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Record(context.Background(), held); err != boltjournal.ErrClosed {
		t.Errorf("Record after Close: %v, want ErrClosed", err)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("journal file mode %v (%v), want 0600", info.Mode(), err)
	}

	before := time.Now()
	j = open2(t, path)
	es, err := j.Pending(context.Background())
	if err != nil || len(es) != 2 {
		t.Fatalf("Pending after reopening = %+v, %v", es, err)
	}
	if es[0].Key != "k1" || es[0].Until.Before(before) || es[0].Until.After(time.Now()) {
		t.Errorf("held entry after reopening: until %v, want freed at the opening (%v)", es[0].Until, before)
	}
	if !es[1].Until.Equal(free.Until) {
		t.Errorf("free entry's until changed: %v, want %v", es[1].Until, free.Until)
	}
	ok, err := j.Claim(context.Background(), "k1", "rec", time.Now(), time.Now().Add(time.Minute))
	if !ok || err != nil {
		t.Errorf("claiming the freed entry: %v, %v", ok, err)
	}
}

func open2(t *testing.T, path string) *boltjournal.Journal {
	t.Helper()
	j, err := boltjournal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// TestOpenLockedFails: a second opener gets an error after LockTimeout,
// not a journal two processes write at once.
func TestOpenLockedFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	open2(t, path)
	start := time.Now()
	j, err := boltjournal.Open(path)
	if err == nil {
		j.Close()
		t.Fatal("a second Open of a held file succeeded")
	}
	if !errors.Is(err, boltjournal.ErrInUse) {
		t.Errorf("a second Open of a held file: %v; want ErrInUse", err)
	}
	if d := time.Since(start); d < boltjournal.LockTimeout/2 {
		t.Errorf("gave up after %v, well before LockTimeout", d)
	}
}

// TestConcurrentRecords: writers that queue behind a commit are all
// committed (group commit), none lost, none reported failed.
func TestConcurrentRecords(t *testing.T) {
	j := open(t)
	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- j.Record(context.Background(), journaltest.Sample(fmt.Sprintf("k%03d", i), time.Duration(i)))
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	es, err := j.Pending(context.Background())
	if err != nil || len(es) != n {
		t.Fatalf("Pending: %d entries, %v; want %d", len(es), err, n)
	}
}
