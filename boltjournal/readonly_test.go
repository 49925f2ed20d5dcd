package boltjournal_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// holdChildEnv, set to a file's path, makes the test binary a child that
// opens that journal, prints "held", and keeps it open until its standard
// input closes.
const holdChildEnv = "BOLTJOURNAL_HOLD_CHILD"

func holdChild(path string) int {
	j, err := boltjournal.Open(path)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("held")
	io.Copy(io.Discard, os.Stdin)
	j.Close()
	return 0
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// claimedJournal writes a journal of three entries, each claimed until an
// hour from now, and returns its path and entries.
func claimedJournal(t *testing.T) (string, []spotflowhttp.Entry) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := boltjournal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []spotflowhttp.Entry
	for i := range 3 {
		e := journaltest.Sample(fmt.Sprintf("k%d", i), time.Duration(i)*time.Second)
		e.Until = time.Now().Add(time.Hour).Round(0)
		if err := j.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return path, want
}

// TestOpenReadOnlyChangesNothing: a journal opened read-only shows its
// entries with their claims as they were, refuses every change, and leaves
// the file byte for byte as it found it.
func TestOpenReadOnlyChangesNothing(t *testing.T) {
	path, want := claimedJournal(t)
	before := fileHash(t, path)

	j, err := boltjournal.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := boltjournal.OpenReadOnly(path) // readers share the file
	if err != nil {
		t.Fatalf("a second read-only open: %v", err)
	}
	j2.Close()
	got, err := j.Pending(context.Background())
	if err != nil || len(got) != len(want) {
		t.Fatalf("Pending = %d entries, %v; want %d", len(got), err, len(want))
	}
	for i := range got {
		if got[i].Owner != want[i].Owner || !got[i].Until.Equal(want[i].Until) {
			t.Errorf("entry %s: claim %s until %v, want %s until %v (unchanged)", got[i].Key,
				got[i].Owner, got[i].Until, want[i].Owner, want[i].Until)
		}
	}
	ctx := context.Background()
	if err := j.Record(ctx, journaltest.Sample("new", 0)); err != boltjournal.ErrReadOnly {
		t.Errorf("Record: %v, want ErrReadOnly", err)
	}
	if ok, err := j.Claim(ctx, "k0", "rec", time.Now().Add(2*time.Hour), time.Now().Add(3*time.Hour)); ok || err != boltjournal.ErrReadOnly {
		t.Errorf("Claim: %v, %v; want false, ErrReadOnly", ok, err)
	}
	if ok, err := j.Settle(ctx, "k0", "call-1"); ok || err != boltjournal.ErrReadOnly {
		t.Errorf("Settle: %v, %v; want false, ErrReadOnly", ok, err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if fileHash(t, path) != before {
		t.Error("the file changed under a read-only open")
	}
}

// TestOpenReadOnlyNeedsAFile: a missing file is an error that names it,
// and is not created; an empty one is an error too, and stays empty.
func TestOpenReadOnlyNeedsAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	if j, err := boltjournal.OpenReadOnly(path); err == nil || !strings.Contains(err.Error(), path) {
		if j != nil {
			j.Close()
		}
		t.Errorf("OpenReadOnly of a missing file: %v; want an error naming it", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenReadOnly created the file (%v)", err)
	}
	empty := write(t, t.TempDir(), "empty.db", nil)
	if j, err := boltjournal.OpenReadOnly(empty); err == nil || !strings.Contains(err.Error(), empty) {
		if j != nil {
			j.Close()
		}
		t.Errorf("OpenReadOnly of an empty file: %v; want an error naming it", err)
	}
	if info, err := os.Stat(empty); err != nil || info.Size() != 0 {
		t.Errorf("the empty file after OpenReadOnly: %v, %v; want it empty", info, err)
	}
}

// TestOpenInUseByAnotherProcess: while a child process holds the journal,
// Open, OpenReadOnly and Salvage give up after LockTimeout with an error
// wrapping ErrInUse that says so and what to do.
func TestOpenInUseByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdChildEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	if l, _ := bufio.NewReader(stdout).ReadString('\n'); l != "held\n" {
		t.Fatalf("the child said %q, want held", l)
	}

	for name, open := range map[string]func(string) error{
		"Open":         func(p string) error { return closeIfOpen(boltjournal.Open(p)) },
		"OpenReadOnly": func(p string) error { return closeIfOpen(boltjournal.OpenReadOnly(p)) },
		"Salvage":      func(p string) error { _, err := boltjournal.Salvage(p); return err },
	} {
		start := time.Now()
		err := open(path)
		took := time.Since(start)
		if !errors.Is(err, boltjournal.ErrInUse) {
			t.Errorf("%s of a held file: %v; want ErrInUse", name, err)
			continue
		}
		if took < boltjournal.LockTimeout/2 || took > boltjournal.LockTimeout+time.Second {
			t.Errorf("%s gave up after %v; want about LockTimeout (%v)", name, took, boltjournal.LockTimeout)
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, "in use by another process") ||
			!strings.Contains(msg, "stop that process") || strings.HasSuffix(msg, "timeout") {
			t.Errorf("%s: %q; want the file, that another process holds it, and what to do", name, msg)
		}
	}
}

func closeIfOpen(j *boltjournal.Journal, err error) error {
	if j != nil {
		j.Close()
	}
	return err
}
