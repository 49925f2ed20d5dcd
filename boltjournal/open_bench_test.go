package boltjournal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// BenchmarkOpen measures what opening a journal costs a service at start:
// Open (lock, check, bbolt, freeing claims: one commit) and Close, for
// journals holding 1,000 and 10,000 free entries of a typical size.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		path := benchJournal(b, n)
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				j, err := boltjournal.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				j.Close()
			}
		})
	}
}

// benchJournal writes a journal of n entries, recorded concurrently so that
// group commit shares the fsyncs, and returns its path.
func benchJournal(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "journal.db")
	j, err := boltjournal.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	var wg sync.WaitGroup
	const writers = 50
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				if err := j.Record(context.Background(), journaltest.Sample(fmt.Sprintf("key-%06d", i), time.Duration(i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return path
}
