package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// ChaosConfig describes a correctness run against the simulator.
type ChaosConfig struct {
	Payments int   // payments to create [2000]
	Workers  int   // goroutines sending them [16]
	Seed     int64 // the simulator's seed [1]
	// Faults injected on POST /payments [5 % each of 500 after commit,
	// reset after commit and proxy error].
	Faults *spotflowtest.Faults
	// Wait between attempts for every client [1 ms], so that the run
	// measures outcomes, not sleeping.
	Wait time.Duration
}

func (c ChaosConfig) withDefaults() ChaosConfig {
	if c.Payments <= 0 {
		c.Payments = 2000
	}
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Faults == nil {
		c.Faults = &spotflowtest.Faults{ServerErrorAfterCommit: 0.05, ResetAfterCommit: 0.05, ProxyError: 0.05}
	}
	if c.Wait <= 0 {
		c.Wait = time.Millisecond
	}
	return c
}

// ChaosResult is what one client caused on the simulator's ledger.
type ChaosResult struct {
	Client     string
	Payments   int // orders sent, one call each
	OK         int // calls that returned a 2xx
	Failed     int // calls that returned an error or a non-2xx
	Duplicated int // orders charged more than once
	Extra      int // charges beyond the first, summed over orders
	Lost       int // orders never charged (the call failed)
	Phantom    int // failed calls whose order was charged all the same
	Requests   int // requests that reached the server
	Replayed   int // idempotent replays the server sent
	Elapsed    time.Duration
}

// ChaosClients returns the contenders of the chaos run on base, each set to
// retry POSTs the way its documentation suggests, with a wait of wait between
// attempts: spotflowhttp's defaults (an Idempotency-Key on every POST, so
// its retries are replays), spotflowhttp that also writes the key into the
// body's reference and resolves duplicate_reference, go-retryablehttp (which
// retries every method by default), failsafe-go with
// failsafehttp.NewRetryPolicyBuilder (errors, 429 and 5xx), and bare.
func ChaosClients(base http.RoundTripper, wait time.Duration) []Client {
	return []Client{
		{NameBare, Bare(base)},
		{NameOurs, Ours(base, ConstantWait(wait)...)},
		{NameOurs + "+reference", Ours(base, append(ConstantWait(wait),
			spotflowhttp.WithReference("reference"), spotflowhttp.WithResolveDuplicates())...)},
		{NameRetryable, Retryable(base, wait)},
		{NameFailsafe, Failsafe(base, wait)},
	}
}

// Chaos sends cfg.Payments payments, each with a unique metadata.order_id
// and no reference, from cfg.Workers goroutines through each client of
// ChaosClients in turn, each against a fresh simulator with cfg.Faults, and
// then counts on the simulator's ledger how often each order was charged.
func Chaos(ctx context.Context, cfg ChaosConfig, only func(name string) bool) ([]ChaosResult, error) {
	cfg = cfg.withDefaults()
	var out []ChaosResult
	for i, c := range ChaosClients(nil, cfg.Wait) {
		if only != nil && !only(c.Name) {
			continue
		}
		r, err := chaosOne(ctx, cfg, i)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func chaosOne(ctx context.Context, cfg ChaosConfig, which int) (ChaosResult, error) {
	srv := spotflowtest.NewServer(spotflowtest.WithSeed(cfg.Seed), spotflowtest.WithFaults(*cfg.Faults))
	defer srv.Close()
	base := LoopbackTransport(cfg.Workers)
	defer base.CloseIdleConnections()
	c := ChaosClients(base, cfg.Wait)[which]

	ok := make([]bool, cfg.Payments)
	orders := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range orders {
				ok[i] = pay(ctx, c.HTTP, srv, i)
			}
		}()
	}
	for i := 0; i < cfg.Payments && ctx.Err() == nil; i++ {
		orders <- i
	}
	close(orders)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return ChaosResult{}, err
	}
	r := ChaosResult{Client: c.Name, Payments: cfg.Payments, Elapsed: time.Since(start)}
	for i, good := range ok {
		n := srv.CountMetadata("order_id", orderID(i))
		if good {
			r.OK++
		} else {
			r.Failed++
		}
		switch {
		case n == 0:
			r.Lost++
		case n > 1:
			r.Duplicated++
			r.Extra += n - 1
		}
		if !good && n > 0 {
			r.Phantom++
		}
	}
	st := srv.Stats()
	r.Requests, r.Replayed = st.Requests, st.Replayed
	return r, nil
}

func orderID(i int) string { return fmt.Sprintf("ord-%06d", i) }

// pay sends one payment and reports whether the caller saw it succeed.
func pay(ctx context.Context, c *http.Client, srv *spotflowtest.Server, i int) bool {
	body := fmt.Appendf(nil, `{"amount":%d,"currency":"NGN","customer":{"email":"buyer%d@example.com"},"metadata":{"order_id":%q}}`,
		5000+i, i, orderID(i))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.BaseURL()+"/payments", bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode >= 200 && resp.StatusCode <= 299
}

// ChaosTable formats chaos results as a Markdown table.
func ChaosTable(rs []ChaosResult) string {
	var b bytes.Buffer
	fmt.Fprintln(&b, "| client | payments | ok | failed | orders charged >1 | extra charges | never charged | failed but charged | server requests | replays | elapsed |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n",
			r.Client, r.Payments, r.OK, r.Failed, r.Duplicated, r.Extra, r.Lost, r.Phantom,
			r.Requests, r.Replayed, r.Elapsed.Round(time.Millisecond))
	}
	return b.String()
}
