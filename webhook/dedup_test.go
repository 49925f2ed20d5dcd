package webhook_test

import (
	"context"
	"strconv"
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
