package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damaged returns the path of a copy of the journal at path with both
// meta pages zeroed, as a partial restore leaves one.
func damaged(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear(b[:2*os.Getpagesize()])
	out := filepath.Join(t.TempDir(), "damaged.db")
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestADamagedJournalGetsTheSalvageAdvice(t *testing.T) {
	path := damaged(t, fillBolt(t, nil, testEntries(time.Now())))
	before, _ := os.ReadFile(path)
	for _, args := range [][]string{
		{"list", "-file", path},
		{"show", "-file", path, "key-old"},
		{"resolve", "-file", path, "-outcome", "created", "key-old"},
		{"reconcile", "-file", path},
	} {
		r := sj(t, []string{"SPOTFLOW_SECRET_KEY=sk"}, args...)
		r.want(t, 2, "damaged journal", "spotflow-journal salvage -file "+path)
		if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: more than one line:\n%s", args[0], r.stderr)
		}
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the damaged file was changed")
	}
}

func TestSalvageCopiesWhatADamagedJournalHoldsToANewOne(t *testing.T) {
	path := damaged(t, fillBolt(t, nil, testEntries(time.Now())))
	r := sj(t, nil, "salvage", "-file", path)
	r.want(t, 0, "3 entries read", "found only outside the tree")
	for _, k := range []string{"key-old", "key-live", "key-shop"} {
		if !strings.Contains(r.stdout, k) {
			t.Errorf("salvage lacks %s:\n%s", k, r.stdout)
		}
	}
	out := filepath.Join(t.TempDir(), "new.db")
	r = sj(t, nil, "salvage", "-file", path, "-out", out)
	r.want(t, 0, "3 entries recorded in "+out, "copied without their body")
	es := pendingIn(t, out)
	if len(es) != 3 {
		t.Fatalf("%d entries in the new journal, want 3", len(es))
	}
	for _, e := range es {
		if e.Owner != "" || !e.Until.IsZero() || !e.BodyMissing || e.Body != nil || e.Reference == "" {
			t.Errorf("entry %+v: want it free, with its reference, without its body", e)
		}
	}
	sj(t, nil, "salvage", "-file", path, "-out", out).want(t, 2, "the file exists")
}

func TestSalvageOfASoundJournalKeepsTheBodies(t *testing.T) {
	path := fillBolt(t, sealKey, testEntries(time.Now()))
	out := filepath.Join(t.TempDir(), "new.db")
	sj(t, nil, "salvage", "-file", path, "-out", out).want(t, 0, "3 entries recorded")
	r := sj(t, []string{"SPOTFLOW_JOURNAL_KEY=" + strings.Repeat("07", 32)}, "show", "-body", "-file", out, "key-live")
	r.want(t, 0)
	if !strings.Contains(r.stdout, secret) || !strings.Contains(r.stdout, "free") {
		t.Errorf("a salvaged sealed entry:\n%s", r.stdout)
	}
}

func TestSalvageOfAFileARunningServiceHolds(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	startService(t, path)
	sj(t, nil, "salvage", "-file", path).want(t, 1, "in use by another process")
}
