package bench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/bench"
)

// TestLimits holds spotflowhttp to what the rate-limit comparison shows,
// against a 127.0.0.1 server that admits 50 requests a second (burst 50) and
// answers the rest 429 with Retry-After: both modes get at least half the
// server's rate through and fail almost no call, and adaptive mode, once it
// has learned the limit, meets a 429 only when it probes for a higher one.
// It is about real time, so the bounds leave room for a loaded 2-core
// machine. In CI it runs both spotflowhttp modes for 6 s with 8 workers
// (about 12 s); BENCH_LIMITS=1 runs the full comparison (16 workers, 20 s
// per client, the other clients too, about 90 s) and prints its table.
func TestLimits(t *testing.T) {
	cfg := bench.LimitsConfig{Workers: 8, Duration: 6 * time.Second}
	only := func(name string) bool { return strings.HasPrefix(name, bench.NameOurs) }
	if os.Getenv("BENCH_LIMITS") != "" {
		cfg, only = bench.LimitsConfig{}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := bench.Limits(ctx, cfg, only)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + bench.LimitsTable(res))
	const rate, burst = 50, 50 // LimitsConfig's defaults
	ours := 0
	for _, r := range res {
		// The harness itself: the server's books balance, and no call
		// succeeded that the server did not admit.
		capacity := int(rate*r.Duration.Seconds()) + burst
		if r.Served2xx+r.Served429 != r.Hits || r.CallsOK > r.Served2xx || r.Served2xx > capacity {
			t.Errorf("%s: %d hits = %d 200s + %d 429s, %d calls ok, capacity %d: the books do not balance",
				r.Client, r.Hits, r.Served2xx, r.Served429, r.CallsOK, capacity)
		}
		if !strings.HasPrefix(r.Client, bench.NameOurs) {
			continue
		}
		ours++
		calls := r.CallsOK + r.CallsError
		if g := r.Goodput(); g < rate/2 {
			t.Errorf("%s: goodput %.1f req/s, want at least half of the server's %d", r.Client, g, rate)
		}
		if r.CallsError*100 > calls {
			t.Errorf("%s: %d of %d calls failed, want at most 1 %%", r.Client, r.CallsError, calls)
		}
		// Adaptive mode's first 429s come while it learns the limit; once it
		// has, it meets one 429 per probe for a higher limit, which it
		// starts after 7 s of traffic without one (the defaults meet 429s
		// about every second, at each end of the shared cool-down).
		probes := 1 + int(r.Duration/2/(7*time.Second))
		if strings.HasSuffix(r.Client, "adaptive") && (r.Late429 > probes || r.Share429() > 0.1) {
			t.Errorf("%s: %d 429s in all (%.1f %%), %d in the second half of the run; want at most 10 %% and %d",
				r.Client, r.Served429, 100*r.Share429(), r.Late429, probes)
		}
	}
	if ours != 2 {
		t.Errorf("%d spotflowhttp rows, want 2 (adaptive and defaults)", ours)
	}
}

// TestChaos sends payments without a reference through each client to the
// simulator with faults on (5 % each of a 500 after commit, a reset after
// commit and a proxy error) and counts on its ledger the orders charged
// twice. spotflowhttp must charge no order twice, its retries replayed by
// the server; the keyless retrier must charge some twice and the bare
// client must lose some: that is how we know the faults bite. In
// CI it sends 500 payments per client (a few seconds); BENCH_CHAOS=1 sends
// 2,000 and prints the table.
func TestChaos(t *testing.T) {
	cfg := bench.ChaosConfig{Payments: 500, Workers: 8}
	if os.Getenv("BENCH_CHAOS") != "" {
		cfg = bench.ChaosConfig{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := bench.Chaos(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + bench.ChaosTable(res))
	seen := map[string]bool{}
	for _, r := range res {
		seen[r.Client] = true
		if r.OK+r.Failed != r.Payments {
			t.Errorf("%s: %d ok + %d failed of %d payments", r.Client, r.OK, r.Failed, r.Payments)
		}
		switch r.Client {
		case bench.NameOurs, bench.NameOurs + "+reference":
			if r.Duplicated != 0 {
				t.Errorf("%s: %d orders charged more than once", r.Client, r.Duplicated)
			}
			if r.Replayed == 0 {
				t.Errorf("%s: no idempotent replay: its retries never met a committed payment", r.Client)
			}
		case bench.NameRetryable:
			if r.Duplicated == 0 {
				t.Errorf("%s retries POSTs without a key, yet charged no order twice: the faults did not bite", r.Client)
			}
		case bench.NameBare:
			if r.Phantom == 0 {
				t.Errorf("%s: no failed call was charged all the same: the faults did not bite", r.Client)
			}
		}
	}
	for _, name := range []string{bench.NameBare, bench.NameOurs, bench.NameOurs + "+reference", bench.NameRetryable} {
		if !seen[name] {
			t.Errorf("no %s row", name)
		}
	}
}
