package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/bench"
)

// TestLimits is the 16-worker, 20 s-per-client run against a server that
// admits 50 requests a second. It takes about two minutes, so it runs only
// with BENCH_LIMITS=1.
func TestLimits(t *testing.T) {
	if os.Getenv("BENCH_LIMITS") == "" {
		t.Skip("set BENCH_LIMITS=1 to run the rate-limit comparison (about 2 minutes)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := bench.Limits(ctx, bench.LimitsConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + bench.LimitsTable(res))
}

// TestChaos sends 2,000 payments without a reference through each client to
// the simulator with faults on and counts the orders charged twice. It runs
// only with BENCH_CHAOS=1. It asserts that spotflowhttp charged no order
// twice; the peers' figures are only reported.
func TestChaos(t *testing.T) {
	if os.Getenv("BENCH_CHAOS") == "" {
		t.Skip("set BENCH_CHAOS=1 to run the correctness comparison under faults")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := bench.Chaos(ctx, bench.ChaosConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + bench.ChaosTable(res))
	for _, r := range res {
		if r.Client == bench.NameOurs || r.Client == bench.NameOurs+"+reference" {
			if r.Duplicated != 0 {
				t.Errorf("%s: %d orders charged more than once", r.Client, r.Duplicated)
			}
		}
	}
}
