package boltjournal

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// FuzzSalvage: no bytes make the check Open runs, or Salvage, panic, and
// Salvage never returns more entries than the bytes could hold. The seeds
// are a real journal whose bucket has its own pages, one whose bucket is
// inline, and damaged copies of them.
func FuzzSalvage(f *testing.F) {
	for _, n := range []int{1, 40} {
		path := filepath.Join(f.TempDir(), fmt.Sprintf("j%d.db", n))
		j, err := Open(path)
		if err != nil {
			f.Fatal(err)
		}
		for i := range n {
			if err := j.Record(context.Background(), journaltest.Sample(fmt.Sprintf("k%02d", i), time.Duration(i))); err != nil {
				f.Fatal(err)
			}
		}
		j.Close()
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		ps := os.Getpagesize()
		f.Add(data)
		f.Add(data[:len(data)/2])
		noMeta := bytes.Clone(data)
		clear(noMeta[:2*ps])
		f.Add(noMeta)
		f.Add(noMeta[2*ps:])
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
