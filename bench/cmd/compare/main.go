// Command compare prints the outage, rate-limit and chaos comparisons of
// spotflowhttp with a bare transport, go-retryablehttp and failsafe-go as
// Markdown tables. Every server it starts listens on 127.0.0.1 and every
// loop it runs is bounded.
//
//	go run ./cmd/compare                  # outage only, a few seconds
//	go run ./cmd/compare -limits -chaos   # everything, about two minutes
//	go run ./cmd/compare -outage=false -adaptive  # adaptive pacing, fixed and changing limit, 140 s
//	go run ./cmd/compare -outage=false -shared   # redislimit, 4 and 16 processes, about 90 s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp/bench"
)

func main() {
	outage := flag.Bool("outage", true, "run the outage comparison")
	limits := flag.Bool("limits", false, "run the rate-limit comparison (Duration per client)")
	chaos := flag.Bool("chaos", false, "run the correctness comparison under injected faults")
	adaptive := flag.Bool("adaptive", false, "run spotflowhttp's adaptive pacing against a fixed and a changing limit, with and without X-RateLimit headers (140 s)")
	n := flag.Int("n", 1000, "outage: sequential requests per client")
	workers := flag.Int("workers", 16, "limits and chaos: concurrent workers")
	duration := flag.Duration("duration", 20*time.Second, "limits: run time per client")
	rate := flag.Float64("rate", 50, "limits: requests a second the server admits")
	burst := flag.Int("burst", 50, "limits: the server's bucket size")
	payments := flag.Int("payments", 2000, "chaos: payments per client")
	seed := flag.Int64("seed", 1, "chaos: simulator seed")
	only := flag.String("only", "", "run only clients whose name contains this")
	shared := flag.Bool("shared", false, "run processes sharing one budget through Redis (redislimit against polling; needs redis-server in PATH)")
	sharedRate := flag.Int("shared-rate", 40, "shared: the budget, requests a second")
	sharedProcs := flag.String("shared-procs", "4,16", "shared: process counts, comma-separated")
	sharedWorkers := flag.Int("shared-workers", 2, "shared: workers per process")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	filter := func(name string) bool { return strings.Contains(name, *only) }

	fmt.Printf("%s, GOMAXPROCS %d, %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	if *outage {
		res, err := bench.Outage(ctx, *n)
		check(err)
		fmt.Printf("## Outage: %d sequential GETs to an always-503 server, zero wait between attempts\n\n%s\n", *n, bench.OutageTable(res))
	}
	if *limits {
		res, err := bench.Limits(ctx, bench.LimitsConfig{Workers: *workers, Duration: *duration, Rate: *rate, Burst: *burst}, filter)
		check(err)
		fmt.Printf("## Limits: %d workers for %s per client, server admits %.0f req/s (burst %d), 429 + Retry-After\n\n%s\n",
			*workers, *duration, *rate, *burst, bench.LimitsTable(res))
	}
	if *shared {
		var procs []int
		for _, f := range strings.Split(*sharedProcs, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				check(fmt.Errorf("-shared-procs %q: want positive numbers separated by commas", *sharedProcs))
			}
			procs = append(procs, n)
		}
		cfg := bench.SharedLimitConfig{Processes: procs, Workers: *sharedWorkers, Duration: *duration, Rate: *sharedRate, Burst: 2}
		res, err := bench.SharedLimit(ctx, cfg, filter)
		check(err)
		fmt.Printf("## Shared limit: processes sharing %d req/s (burst 2) through Redis, %d workers each, %s per run, counted after the first second\n\n%s\n",
			*sharedRate, *sharedWorkers, *duration, bench.SharedLimitTable(res))
	}
	if *adaptive {
		for _, cfg := range bench.AdaptiveScenarios() {
			cfg.Workers = *workers
			res, err := bench.Adaptive(ctx, cfg)
			check(err)
			fmt.Printf("## Adaptive pacing, %s: %d workers, 429 + Retry-After\n\n%s\n%s\n", cfg.Name, cfg.Workers, res.Summary(), res.Curve())
		}
	}
	if *chaos {
		res, err := bench.Chaos(ctx, bench.ChaosConfig{Payments: *payments, Workers: *workers, Seed: *seed}, filter)
		check(err)
		fmt.Printf("## Chaos: %d payments without reference, %d workers, seed %d, 5 %% each of 500 after commit, reset after commit, proxy error\n\n%s\n",
			*payments, *workers, *seed, bench.ChaosTable(res))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}
