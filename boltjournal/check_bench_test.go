package boltjournal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/journaltest"
)

// BenchmarkCheckFile measures the part of Open that reads the file as
// bytes before bbolt maps it, for journals of 1,000 and 10,000 entries.
func BenchmarkCheckFile(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		path := filepath.Join(b.TempDir(), "journal.db")
		j, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range 50 {
			wg.Go(func() {
				for i := w; i < n; i += 50 {
					if err := j.Record(context.Background(), journaltest.Sample(fmt.Sprintf("key-%06d", i), time.Duration(i))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		j.Close()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		info, _ := f.Stat()
		b.Run(fmt.Sprintf("entries=%d/bytes=%d", n, info.Size()), func(b *testing.B) {
			for b.Loop() {
				if err := checkFile(f, info.Size()); err != nil {
					b.Fatal(err)
				}
			}
		})
		f.Close()
	}
}
