package webhook_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
	"github.com/spotflow-go/spotflowhttp/webhook"
	"github.com/spotflow-go/spotflowhttp/webhook/deduptest"
)

func TestMemoryDedup(t *testing.T) {
	deduptest.Run(t, func(*testing.T) webhook.Dedup { return &webhook.MemoryDedup{} })
}

// claim is d.Claim for a test that expects state.
func claim(t *testing.T, d webhook.Dedup, id string, want webhook.ClaimState) string {
	t.Helper()
	got, token, err := d.Claim(context.Background(), id)
	if err != nil || got != want {
		t.Fatalf("Claim(%q) = %v, %v; want %v", id, got, err, want)
	}
	return token
}

func TestMemoryDedupRetention(t *testing.T) {
	clock := spotflowtest.NewClock(t0)
	d := &webhook.MemoryDedup{Retention: time.Hour, Now: clock.Now}
	ctx := context.Background()
	d.Commit(ctx, "a", claim(t, d, "a", webhook.Claimed))
	clock.Advance(30 * time.Minute)
	d.Commit(ctx, "b", claim(t, d, "b", webhook.Claimed))
	clock.Advance(30*time.Minute - time.Nanosecond)
	claim(t, d, "a", webhook.Processed)
	clock.Advance(time.Nanosecond)
	// a was committed an hour ago, b half an hour ago.
	tok := claim(t, d, "a", webhook.Claimed)
	claim(t, d, "b", webhook.Processed)
	d.Commit(ctx, "a", tok)
	clock.Advance(30 * time.Minute)
	claim(t, d, "b", webhook.Claimed)
	claim(t, d, "a", webhook.Processed) // its second commit counts
}

func TestMemoryDedupMaxIDs(t *testing.T) {
	clock := spotflowtest.NewClock(t0)
	d := &webhook.MemoryDedup{MaxIDs: 3, Now: clock.Now}
	ctx := context.Background()
	for i := range 5 {
		id := strconv.Itoa(i)
		d.Commit(ctx, id, claim(t, d, id, webhook.Claimed))
	}
	// The oldest two are forgotten first.
	for _, id := range []string{"4", "3", "2"} {
		claim(t, d, id, webhook.Processed)
	}
	claim(t, d, "1", webhook.Claimed)
	claim(t, d, "0", webhook.Claimed)
	// Ids being processed do not push processed ones out.
	claim(t, d, "2", webhook.Processed)
}

// BenchmarkMemoryDedup reports the heap a MemoryDedup holds per processed
// id, the id included, with ids as long as Svix's (msg_ and 27
// characters). Run it with -benchtime 1x.
func BenchmarkMemoryDedup(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("msg_%027d", i)
	}
	ctx := context.Background()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d := &webhook.MemoryDedup{MaxIDs: n}
		for _, id := range ids {
			id = strings.Clone(id) // as a request's header is its own
			_, tok, _ := d.Claim(ctx, id)
			d.Commit(ctx, id, tok)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/id")
		runtime.KeepAlive(d)
	}
}
