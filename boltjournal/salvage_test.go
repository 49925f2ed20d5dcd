package boltjournal_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// salvageOf runs Salvage on data written to a file and checks that the
// file is byte for byte what it was.
func salvageOf(t *testing.T, data []byte) ([]spotflowhttp.Entry, error) {
	t.Helper()
	path := write(t, t.TempDir(), "journal.db", data)
	es, err := boltjournal.Salvage(path)
	after, rerr := os.ReadFile(path)
	if rerr != nil || !bytes.Equal(after, data) {
		t.Fatalf("Salvage changed the file (%v)", rerr)
	}
	return es, err
}

// byKey indexes entries by key.
func byKey(es []spotflowhttp.Entry) map[string]spotflowhttp.Entry {
	m := map[string]spotflowhttp.Entry{}
	for _, e := range es {
		m[e.Key] = e
	}
	return m
}

// sameEntry compares entries, times as instants.
func sameEntry(a, b spotflowhttp.Entry) bool {
	if !a.Time.Equal(b.Time) || !a.Until.Equal(b.Until) {
		return false
	}
	a.Time, a.Until = b.Time, b.Until
	return reflect.DeepEqual(a, b)
}

// settledKey reports whether key is one of the fixture's settled entries.
func settledKey(key string) bool { return key >= "key-0300" && key <= "key-0349" }

// TestSalvageSoundFileGivesItsEntries: from a sound journal Salvage gives
// exactly what Pending gives, and no error.
func TestSalvageSoundFileGivesItsEntries(t *testing.T) {
	fx := journalFixture(t)
	got, err := salvageOf(t, fx.data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(fx.entries) {
		t.Fatalf("Salvage gave %d entries, want %d", len(got), len(fx.entries))
	}
	for i := range got {
		if !sameEntry(got[i], fx.entries[i]) {
			t.Fatalf("entry %d: %+v, want %+v (oldest first)", i, got[i], fx.entries[i])
		}
	}
}

// TestSalvageWithoutMetaPages: with both meta pages zeroed, every pending
// entry is read out of the leaf pages, equal to what was recorded; the
// settled entries that old pages still hold may come too, and every entry
// is reported as found only outside the tree.
func TestSalvageWithoutMetaPages(t *testing.T) {
	fx := journalFixture(t)
	data := damage(fx.data, func(b []byte) []byte { fill(b[:2*fx.pageSize], nil); return b })
	got, err := salvageOf(t, data)
	var se *boltjournal.SalvageError
	if !errors.As(err, &se) || !errors.Is(err, boltjournal.ErrDamaged) {
		t.Fatalf("error %v; want a *SalvageError wrapping ErrDamaged", err)
	}
	found := byKey(got)
	for _, w := range fx.entries {
		if g, ok := found[w.Key]; !ok || !sameEntry(g, w) {
			t.Fatalf("entry %s: %+v (found %t), want %+v", w.Key, g, ok, w)
		}
	}
	for k := range found {
		if _, pending := byKey(fx.entries)[k]; !pending && !settledKey(k) {
			t.Errorf("Salvage gave %s, which was never recorded", k)
		}
	}
	if len(se.Unreached) != len(got) {
		t.Errorf("%d entries reported found outside the tree, want all %d (no meta, no tree)", len(se.Unreached), len(got))
	}
	if !strings.Contains(err.Error(), "never send them again") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line saying what to do with them", err)
	}
}

// TestSalvageDamagedTree: with the entries bucket's root page zeroed, the
// leaves are found by scanning the pages: every pending entry comes back.
func TestSalvageDamagedTree(t *testing.T) {
	fx := journalFixture(t)
	ps := fx.pageSize
	data := damage(fx.data, func(b []byte) []byte { fill(b[int(fx.root)*ps:int(fx.root+1)*ps], nil); return b })
	got, err := salvageOf(t, data)
	if !errors.Is(err, boltjournal.ErrDamaged) {
		t.Fatalf("error %v; want ErrDamaged", err)
	}
	found := byKey(got)
	for _, w := range fx.entries {
		if g, ok := found[w.Key]; !ok || !sameEntry(g, w) {
			t.Fatalf("entry %s: found %t; want it, as recorded", w.Key, ok)
		}
	}
}

// TestSalvageTruncated: a journal cut to half gives back, as recorded, the
// entries the kept pages hold, and says the file was cut.
func TestSalvageTruncated(t *testing.T) {
	fx := journalFixture(t)
	got, err := salvageOf(t, fx.data[:len(fx.data)/2])
	if !errors.Is(err, boltjournal.ErrDamaged) || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("error %v; want ErrDamaged saying the file was cut short", err)
	}
	want := byKey(fx.entries)
	pending := 0
	for _, g := range got {
		if w, ok := want[g.Key]; ok {
			pending++
			if !sameEntry(g, w) {
				t.Errorf("entry %s: %+v, want %+v", g.Key, g, w)
			}
		} else if !settledKey(g.Key) {
			t.Errorf("Salvage gave %s, which was never recorded", g.Key)
		}
	}
	if pending < len(fx.entries)/4 {
		t.Errorf("Salvage found %d of %d pending entries in half the file; want more", pending, len(fx.entries))
	}
}

// TestSalvageNotAJournal: random bytes give no entries and an error
// wrapping ErrDamaged; a missing file an error, and no file.
func TestSalvageNotAJournal(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 64<<10)
	fill(data, rnd)
	got, err := salvageOf(t, data)
	if len(got) != 0 || !errors.Is(err, boltjournal.ErrDamaged) {
		t.Errorf("Salvage of random bytes: %d entries, %v; want none and ErrDamaged", len(got), err)
	}
	path := filepath.Join(t.TempDir(), "missing.db")
	if _, err := boltjournal.Salvage(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Salvage of a missing file: %v; want an error naming it", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Salvage created the file (%v)", err)
	}
}

// TestSalvageInlineBucket: a journal of one entry keeps it inline in the
// root page (bbolt gives a bucket under a quarter page no page of its
// own); with both meta pages zeroed it is still found.
func TestSalvageInlineBucket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := boltjournal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []spotflowhttp.Entry{journaltest.Sample("k1", 0)}
	err = j.Record(t.Context(), want[0])
	j.Close()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fill(data[:2*os.Getpagesize()], nil)
	got, err := salvageOf(t, data)
	if !errors.Is(err, boltjournal.ErrDamaged) {
		t.Errorf("error %v; want ErrDamaged", err)
	}
	if !slices.EqualFunc(got, want, sameEntry) {
		t.Errorf("Salvage gave %d entries %+v; want %+v", len(got), got, want)
	}
}
