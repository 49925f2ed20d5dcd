// Command spotflow-demo shows what spotflowhttp changes for a payment
// integration. It starts the Spotflow simulator (package spotflowtest) in
// process, with a rate limit, server errors, proxy errors, connection resets,
// latency and a short outage, and sends the same payments three times:
//
//	(a) plain        a plain http.Client: each payment sent once
//	(b) naive retry  the same client in the retry loop many integrations
//	                 have: on an error or a 5xx, send a new request, up to 3
//	                 more times, with no idempotency key
//	(c) spotflowhttp the same client with Transport: spotflowhttp.NewTransport,
//	                 pacing itself under the server's limit, with a file
//	                 journal and a Reconciler that settles every uncertain
//	                 call (-crash: stopped half-way and restarted from it)
//
// Then it compares, from the simulator's ledger, what each way caused:
// payments confirmed, charged twice, lost, or left unknown.
//
// Usage:
//
//	go run ./cmd/spotflow-demo [-n 2000] [-workers 32] [-seed 1] [flags]
//
// The exit status is 1 if column (c) charged any payment twice or lost any,
// so the command doubles as a smoke test of the package.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// config is one run of the demo: the workload, the simulated server and its
// faults. The defaults are defaultConfig.
type config struct {
	Payments int
	Workers  int
	Seed     int64
	Timeout  time.Duration // deadline of one payment call

	Rate  float64 // server rate limit, requests a second; 0 for none
	Burst int     // server rate-limit burst

	Faults   spotflowtest.Faults // probabilities, latency and jitter; Outages is set from OutageAt and Outage
	OutageAt time.Duration       // start of the outage, after the server starts
	Outage   time.Duration       // length of the outage; 0 for none

	Crash bool // stop (c) abruptly half-way and restart it from its journal
}

func defaultConfig() config {
	return config{
		Payments: 2000,
		Workers:  32,
		Seed:     1,
		Timeout:  10 * time.Second,
		Rate:     400,
		Burst:    40,
		Faults: spotflowtest.Faults{
			ServerErrorBeforeCommit: 0.02,
			ServerErrorAfterCommit:  0.02,
			ProxyError:              0.03,
			ResetBeforeCommit:       0.01,
			ResetAfterCommit:        0.02,
			Latency:                 20 * time.Millisecond,
			LatencyJitter:           40 * time.Millisecond,
		},
		OutageAt: time.Second,
		Outage:   500 * time.Millisecond,
	}
}

// serverFaults is cfg's Faults with the outage window added.
func (cfg config) serverFaults() spotflowtest.Faults {
	f := cfg.Faults
	if cfg.Outage > 0 {
		f.Outages = []spotflowtest.Window{{Start: cfg.OutageAt, Duration: cfg.Outage}}
	}
	return f
}

const usageHead = `spotflow-demo sends the same payments to an in-process Spotflow simulator
three times and compares what each client caused on the ledger:

  (a) plain         a plain http.Client; each payment is sent once
  (b) naive retry   the same client, retrying on an error or a 5xx up to 3
                    times with a new request and no idempotency key
  (c) spotflowhttp  the same client with Transport: spotflowhttp.NewTransport,
                    with the options an integration would add: the key
                    written into the body's reference (WithReference),
                    duplicate_reference resolved (WithResolveDuplicates),
                    and pacing at 90 % of -rate (WithRateLimit)

Each payment is POST /api/v1/payments with an amount, a currency, a customer
email and metadata.order_id, and no reference of its own. In (c) each call's
idempotency key is its order id, and each keyed call is written to a file
journal (boltjournal) before it is sent; the calls that end with an uncertain
outcome are settled at the end by a Reconciler: from a webhook, else the
verify endpoint, else by sending them again with the same key, as Spotflow's
docs advise. With -crash, (c) is stopped abruptly half-way (its transport
and all it holds in memory dropped, the calls in flight abandoned) and
restarted from its journal file. Every column runs against a fresh simulator
with the same seed, so faults are reproducible; what depends on timing (429s,
which requests fall in the outage) varies a little from run to run.

The exit status is 1 if (c) charged a payment twice or lost one.

Usage:
  go run ./cmd/spotflow-demo [flags]

Flags:
`

// parseFlags reads the command line into a config, starting from the
// defaults.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("spotflow-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.Payments, "n", cfg.Payments, "`payments` to send in each column, each with its own order id")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "`goroutines` sending payments concurrently")
	fs.Int64Var(&cfg.Seed, "seed", cfg.Seed, "`seed` of the simulator's fault decisions; the same seed gives the same faults")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "deadline of each payment call, retries and waits included")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "server rate limit in `requests/s` (0: none); above it the server answers 429 with Retry-After")
	fs.IntVar(&cfg.Burst, "burst", cfg.Burst, "server rate-limit `burst`")
	fs.Float64Var(&cfg.Faults.ServerErrorBeforeCommit, "server-error-before", cfg.Faults.ServerErrorBeforeCommit,
		"`probability` of a 500 server_error before the payment is created")
	fs.Float64Var(&cfg.Faults.ServerErrorAfterCommit, "server-error-after", cfg.Faults.ServerErrorAfterCommit,
		"`probability` of a 500 server_error after the payment was created (the customer is charged)")
	fs.Float64Var(&cfg.Faults.ProxyError, "proxy-error", cfg.Faults.ProxyError,
		"`probability` of a 502, 503 or 504 from a proxy, before the payment is created")
	fs.Float64Var(&cfg.Faults.ResetBeforeCommit, "reset-before", cfg.Faults.ResetBeforeCommit,
		"`probability` of a connection reset before the payment is created")
	fs.Float64Var(&cfg.Faults.ResetAfterCommit, "reset-after", cfg.Faults.ResetAfterCommit,
		"`probability` of a connection reset after the payment was created")
	fs.DurationVar(&cfg.Faults.Latency, "latency", cfg.Faults.Latency, "server latency added to every request")
	fs.DurationVar(&cfg.Faults.LatencyJitter, "jitter", cfg.Faults.LatencyJitter, "extra server latency, up to this much (deterministic per request)")
	fs.DurationVar(&cfg.Outage, "outage", cfg.Outage, "length of an outage (every request answered 503); 0: none")
	fs.DurationVar(&cfg.OutageAt, "outage-at", cfg.OutageAt, "start of the outage, measured from the start of each column")
	fs.BoolVar(&cfg.Crash, "crash", cfg.Crash, "stop (c) abruptly half-way: drop its transport and all it holds in memory, reopen its journal file as a new process would, and go on")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case cfg.Payments < 1:
		return cfg, fmt.Errorf("-n must be at least 1")
	case cfg.Workers < 1:
		return cfg, fmt.Errorf("-workers must be at least 1")
	case cfg.Timeout <= 0:
		return cfg, fmt.Errorf("-timeout must be positive")
	case cfg.Rate > 0 && cfg.Burst < 1:
		return cfg, fmt.Errorf("-burst must be at least 1")
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spotflow-demo:", err)
		os.Exit(2)
	}

	results := run(cfg, newProgress(os.Stderr))
	printSetup(os.Stdout, cfg)
	printTable(os.Stdout, results)

	if c := results[len(results)-1]; c.Duplicates > 0 || c.Lost > 0 {
		fmt.Fprintf(os.Stderr, "spotflow-demo: FAIL: %s charged %d duplicates and lost %d payments\n",
			c.Name, c.Duplicates, c.Lost)
		os.Exit(1)
	}
}
