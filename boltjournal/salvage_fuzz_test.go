package boltjournal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// FuzzSalvage: no bytes make the check Open runs, or Salvage, panic, and
// Salvage never returns more entries than the bytes could hold. The seeds
// are journals written by bbolt with 1 KiB pages (small inputs fuzz
// faster; the format is the same at any page size): one whose entries
// bucket has pages of its own and one whose bucket is inline, each cut to
// the pages in use, and damaged copies of them.
func FuzzSalvage(f *testing.F) {
	for _, n := range []int{1, 12} {
		data := fuzzSeed(f, n)
		f.Add(data)
		f.Add(data[:len(data)/2])
		noMeta := bytes.Clone(data)
		clear(noMeta[:2*1024])
		f.Add(noMeta)
	}
	f.Add([]byte{})
	f.Add([]byte("not a journal"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		_ = checkFile(r, int64(len(data)))
		s := salvage(r, int64(len(data)))
		if len(s.entries) > len(data)/leafElemSize {
			t.Fatalf("%d entries from %d bytes", len(s.entries), len(data))
		}
	})
}

// fuzzSeed returns a journal of n entries with 1 KiB pages, as bbolt writes
// it, cut to the pages in use.
func fuzzSeed(f testing.TB, n int) []byte {
	path := filepath.Join(f.TempDir(), fmt.Sprintf("j%d.db", n))
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 1024})
	if err != nil {
		f.Fatal(err)
	}
	var size int64
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		for i := range n {
			e := journaltest.Sample(fmt.Sprintf("k%02d", i), time.Duration(i))
			v, _ := json.Marshal(e)
			if err := b.Put([]byte(e.Key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	}
	db.Close()
	if err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	if s := salvage(bytes.NewReader(data[:size]), size); len(s.entries) != n || len(s.problems) > 0 {
		f.Fatalf("seed of %d entries: salvage read %d, %v", n, len(s.entries), s.problems)
	}
	return data[:size]
}
