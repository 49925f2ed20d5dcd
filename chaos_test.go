package spotflowhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// TestChaos sends 10,000 payments from 50 goroutines through NewTransport to
// a simulator that injects every fault it knows (500s before and after
// commit, 502/503/504 from a proxy, connection resets before and after
// commit, latency with jitter, a 2-second outage soon after the start),
// behind a rate limit that the client paces itself under. It holds the
// package to its promise against the ledger: no payment is charged twice,
// and every call comes back either confirmed or as an uncertain *Error
// carrying the key that resolves it. Each uncertain one is resolved by a
// verify call, whose answer must match the ledger. Under -short it sends
// 1,000, with a 500 ms outage.
//
// Every call has a 5 s deadline, so the 30 s wait Spotflow prescribes after
// server_error is never started: the 500 comes back at once, uncertain.
func TestChaos(t *testing.T) {
	const (
		workers  = 50
		deadline = 5 * time.Second  // per call
		sendFor  = 40 * time.Second // at most, for sending
		allFor   = 55 * time.Second // at most, for the test: it must end within a minute
		// The server's limit and the client's pace below it: the headroom
		// absorbs the latency jitter that bunches arrivals.
		serverRate, serverBurst = 1500, 150
		clientRate, clientBurst = 1200, 50
	)
	n, outage := 10_000, 2*time.Second
	if testing.Short() {
		n, outage = 1_000, 500*time.Millisecond
	}
	start := time.Now()
	testCtx, cancel := context.WithTimeout(context.Background(), allFor)
	defer cancel()

	srv := spotflowtest.NewServer(
		spotflowtest.WithSeed(20240601),
		spotflowtest.WithRateLimit(serverRate, serverBurst),
		spotflowtest.WithFaults(spotflowtest.Faults{
			ServerErrorBeforeCommit: 0.02,
			ServerErrorAfterCommit:  0.02,
			ProxyError:              0.03,
			ResetBeforeCommit:       0.01,
			ResetAfterCommit:        0.02,
			Latency:                 time.Millisecond,
			LatencyJitter:           4 * time.Millisecond,
			Outages:                 []spotflowtest.Window{{Start: 500 * time.Millisecond, Duration: outage}},
		}))
	defer srv.Close()
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 2 * workers // no connection churn: 10,000 calls would leave as many sockets in TIME_WAIT
	defer base.CloseIdleConnections()

	// Keys of the calls with an attempt that may have been processed, to
	// explain a failure.
	var maybeSent sync.Map
	client := &http.Client{Transport: spotflowhttp.NewTransport(base,
		spotflowhttp.WithErrors(),
		spotflowhttp.WithReference("reference"),
		spotflowhttp.WithResolveDuplicates(),
		spotflowhttp.WithRateLimit(rate.Limit(clientRate), clientBurst),
		spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) {
			if ev.StatusCode == 0 || ev.StatusCode >= 500 {
				maybeSent.Store(ev.IdempotencyKey, true)
			}
		}),
	)}

	// Send.
	results := make([]chaosResult, n)
	sendCtx, stop := context.WithTimeout(testCtx, sendFor)
	defer stop()
	parallel(sendCtx, workers, n, func(i int) {
		ctx, cancel := context.WithTimeout(sendCtx, deadline)
		defer cancel()
		results[i] = pay(ctx, client, srv, i)
	})
	if sendCtx.Err() != nil {
		t.Fatalf("sending %d payments took more than %v", n, sendFor)
	}
	sent := time.Since(start)

	// Resolve every uncertain outcome by its key, as the *Error says to.
	parallel(testCtx, workers, n, func(i int) {
		r := &results[i]
		if r.err != nil && r.err.Uncertain && r.key != "" {
			ctx, cancel := context.WithTimeout(testCtx, deadline)
			defer cancel()
			r.found, r.verifyErr = verifyPayment(ctx, client, srv, r.key)
		}
	})
	if testCtx.Err() != nil {
		t.Fatalf("verifying took past the test's %v", allFor)
	}

	// Hold every outcome against the ledger.
	errs := errorLimiter{t: t, max: 20}
	ledger := srv.Payments()
	byOrder := chargedOnce(&errs, ledger)
	tally := chaosTally{endings: map[string]int{}}
	for i, r := range results {
		tally.check(&errs, orderID(i), r, byOrder[orderID(i)], &maybeSent)
	}
	if len(ledger) != tally.confirmed+tally.charged {
		errs.Errorf("the ledger has %d payments; the client knows of %d", len(ledger), tally.confirmed+tally.charged)
	}
	errs.flush()

	st := srv.Stats()
	t.Logf("%d payments from %d goroutines: %d confirmed, %d uncertain then verified charged, %d uncertain then verified not charged; uncertain calls ended with %v",
		n, workers, tally.confirmed, tally.charged, tally.notCharged, tally.endings)
	t.Logf("server: %d requests (%.2f per payment), %d 429s, %d resets, %d 500s, %d proxy errors, %d outage 503s, %d idempotent replays",
		st.Requests, float64(st.Requests)/float64(n), st.RateLimited, st.Resets, st.ServerErrors, st.ProxyErrors, st.OutageErrors, st.Replayed)
	t.Logf("wall time: %v sending, %v in all", sent.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// chargedOnce indexes ledger by order id, and reports a reference charged
// more than once.
func chargedOnce(errs *errorLimiter, ledger []spotflowtest.Payment) map[string][]spotflowtest.Payment {
	byOrder := make(map[string][]spotflowtest.Payment, len(ledger))
	byReference := make(map[string]int, len(ledger))
	for _, p := range ledger {
		byOrder[p.Metadata["order_id"]] = append(byOrder[p.Metadata["order_id"]], p)
		byReference[p.Reference]++
	}
	for ref, k := range byReference {
		if k > 1 {
			errs.Errorf("reference %s charged %d times", ref, k)
		}
	}
	return byOrder
}

// chaosTally counts how the calls of a chaos run ended.
type chaosTally struct {
	confirmed, charged, notCharged int
	endings                        map[string]int // how the uncertain calls ended
}

// check holds the result r of the call for order against got, the
// ledger's payments for that order, and counts it. maybeSent holds the
// keys of calls with an attempt that may have been processed.
func (c *chaosTally) check(errs *errorLimiter, order string, r chaosResult, got []spotflowtest.Payment, maybeSent *sync.Map) {
	if len(got) > 1 {
		errs.Errorf("%s charged %d times", order, len(got))
	}
	switch {
	case r.other != nil:
		errs.Errorf("%s: %v", order, r.other)
	case r.key == "":
		errs.Errorf("%s: no idempotency key (confirmed %v, err %v)", order, r.confirmed, r.err)
	case r.confirmed:
		c.confirmed++
		if len(got) != 1 || got[0].Reference != r.key {
			errs.Errorf("%s: confirmed with key %s, but the ledger has %+v", order, r.key, got)
		}
	case !r.err.Uncertain:
		_, maybe := maybeSent.Load(r.key)
		errs.Errorf("%s: %v; want confirmed or an uncertain *Error (an earlier attempt may have been processed: %v; charged %d times)",
			order, r.err, maybe, len(got))
	case r.verifyErr != nil:
		errs.Errorf("%s: verify %s: %v", order, r.key, r.verifyErr)
	case r.found:
		c.charged++
		c.endings[ending(r.err)]++
		if len(got) != 1 || got[0].Reference != r.key {
			errs.Errorf("%s: verify found reference %s, but the ledger has %+v", order, r.key, got)
		}
	default:
		c.notCharged++
		c.endings[ending(r.err)]++
		if len(got) != 0 {
			errs.Errorf("%s: verify found no payment with reference %s, but the ledger has %+v", order, r.key, got)
		}
	}
}

// chaosResult is what one payment call came back with, and for an
// uncertain one what verifying it found.
type chaosResult struct {
	key       string              // the call's idempotency key, which is also its reference
	confirmed bool                // a 2xx, possibly the existing payment fetched for a duplicate
	err       *spotflowhttp.Error // the failure, for a call not confirmed
	other     error               // anything else: a failure of the test

	found     bool
	verifyErr error
}

// pay sends payment i and sorts out what came back.
func pay(ctx context.Context, client *http.Client, srv *spotflowtest.Server, i int) chaosResult {
	resp, err := client.Do(paymentRequest(ctx, srv, i))
	if err != nil {
		var e *spotflowhttp.Error
		if !errors.As(err, &e) {
			return chaosResult{other: err}
		}
		return chaosResult{key: e.IdempotencyKey, err: e}
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return chaosResult{other: fmt.Errorf("reading a %d: %w", resp.StatusCode, err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return chaosResult{other: fmt.Errorf("WithErrors returned a %d response: %v", resp.StatusCode, spotflowhttp.ErrorOf(resp))}
	}
	return chaosResult{key: spotflowhttp.IdempotencyKeyOf(resp), confirmed: true}
}

// ending names how an uncertain call ended: its final status, or the
// connection error.
func ending(e *spotflowhttp.Error) string {
	if e.StatusCode != 0 {
		return fmt.Sprint(e.StatusCode)
	}
	if errors.Is(e, context.DeadlineExceeded) {
		return "deadline"
	}
	return "connection error"
}

// paymentRequest is payment i: an amount, a currency, a customer and an
// order id, and no reference of its own.
func paymentRequest(ctx context.Context, srv *spotflowtest.Server, i int) *http.Request {
	body := fmt.Sprintf(`{"amount":%d,"currency":"NGN","customer":{"email":"c%d@example.com"},"metadata":{"order_id":"%s"}}`,
		1000+i%100, i, orderID(i))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.BaseURL()+"/payments", bytes.NewReader([]byte(body)))
	if err != nil {
		panic(err) // the simulator's own URL
	}
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	req.Header.Set("Content-Type", "application/json")
	return req
}

func orderID(i int) string { return fmt.Sprintf("ord-%05d", i) }

// verifyPayment asks the server whether a payment with reference exists:
// GET /payments/verify?reference=R, 200 with the payment or 404.
func verifyPayment(ctx context.Context, client *http.Client, srv *spotflowtest.Server, reference string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		srv.BaseURL()+"/payments/verify?reference="+url.QueryEscape(reference), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	resp, err := client.Do(req)
	var e *spotflowhttp.Error
	if errors.As(err, &e) && e.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var p struct {
		Reference string `json:"reference"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return false, err
	}
	if p.Reference != reference {
		return false, fmt.Errorf("verify answered reference %q", p.Reference)
	}
	return true, nil
}

// parallel calls fn(i) for i in [0, n) from workers goroutines, and returns
// when they are done; it starts no new call once ctx is done.
func parallel(ctx context.Context, workers, n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// errorLimiter reports the first max errors and counts the rest, so that a
// broken run does not print ten thousand lines.
type errorLimiter struct {
	t        *testing.T
	max, all int
}

func (l *errorLimiter) Errorf(format string, args ...any) {
	l.t.Helper()
	l.all++
	if l.all <= l.max {
		l.t.Errorf(format, args...)
	}
}

func (l *errorLimiter) flush() {
	l.t.Helper()
	if l.all > l.max {
		l.t.Errorf("... and %d more errors", l.all-l.max)
	}
}
