package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/bench"
)

// TestSharedLimit is the redislimit run of cmd/compare -shared: 4 and 16
// processes sharing 40 requests a second through a local redis-server, 20 s
// each, queued against polling. It takes about 90 s, so it runs only with
// BENCH_SHARED=1; redislimit's own tests assert the invariants in CI.
func TestSharedLimit(t *testing.T) {
	if os.Getenv("BENCH_SHARED") == "" {
		t.Skip("set BENCH_SHARED=1 to run processes sharing a budget through Redis (about 90 s; needs redis-server)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := bench.SharedLimit(ctx, bench.SharedLimitConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + bench.SharedLimitTable(res))
}
