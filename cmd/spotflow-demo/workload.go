package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// payment is one order to charge.
type payment struct {
	OrderID string
	Body    []byte // the JSON request body, without a reference
}

// paymentBody is what the merchant sends: no reference of its own, which is
// what makes a blind retry able to charge twice.
type paymentBody struct {
	Amount   int64             `json:"amount"`
	Currency string            `json:"currency"`
	Customer map[string]string `json:"customer"`
	Metadata map[string]string `json:"metadata"`
}

func newPayments(n int) []payment {
	ps := make([]payment, n)
	for i := range ps {
		id := fmt.Sprintf("ord-%06d", i+1)
		body, err := json.Marshal(paymentBody{
			Amount:   int64(1000 + 100*(i%50)),
			Currency: "NGN",
			Customer: map[string]string{"email": fmt.Sprintf("customer%d@example.com", i+1)},
			Metadata: map[string]string{"order_id": id},
		})
		if err != nil {
			panic(err) // a struct of strings and ints always marshals
		}
		ps[i] = payment{OrderID: id, Body: body}
	}
	return ps
}

// state is what the merchant was told about a payment.
type state int

const (
	confirmed state = iota // a 2xx: charged
	failed                 // a definite failure: not charged
	unknown                // a 5xx or a connection error: may or may not be charged
)

// outcome is what one payment call came back with.
type outcome struct {
	state     state
	key       string // the idempotency key to resolve it with; "" if none
	escalated bool   // a human must act (a 401, 403, insufficient_balance)
	replayed  bool   // Spotflow answered with the success of an earlier attempt
	crashed   bool   // in flight or not yet sent when the client crashed (-crash)
	took      time.Duration
}

// sender is one way of sending a payment: one column of the table.
type sender interface {
	// send charges p once, as the integration would, within ctx.
	send(ctx context.Context, p payment) outcome
}

// settler is a sender that can settle unknown outcomes after the fact.
type settler interface {
	sender
	// settle finds out what became of the payments whose outcome is
	// unknown, updates outs, and counts in r how each was settled.
	settle(ctx context.Context, payments []payment, outs []outcome, r *result)
}

// column is one contender: a heading, a description for the setup lines,
// and how to make its sender over a base transport.
type column struct {
	Name     string
	About    func(cfg config) string
	New      func(api target) sender
	Webhooks bool // the simulator sends it webhooks
}

// target is where and how a sender sends: the simulator's API, its secret
// key, the transport under the client, and the run's settings.
type target struct {
	BaseURL string
	Key     string
	Base    http.RoundTripper
	Cfg     config
	Sim     *spotflowtest.Server
}

var columns = []column{
	{
		Name:  "(a) plain",
		About: func(config) string { return "http.Client; each payment sent once, whatever comes back" },
		New:   func(api target) sender { return newPlain(api) },
	},
	{
		Name: "(b) naive retry",
		About: func(config) string {
			return "http.Client; on an error or a 5xx, a new request, up to 3 more times, 200 ms × attempt apart, no idempotency key"
		},
		New: func(api target) sender { return naive{newPlain(api)} },
	},
	{
		Name:     "(c) spotflowhttp",
		About:    protectedAbout,
		New:      newProtected,
		Webhooks: true,
	},
}

// result is one column's figures.
type result struct {
	Name string

	Asked      int
	Confirmed  int // told "charged" by the end
	Failed     int // told "not charged" by the end
	Unknown    int // outcome unknown right after the run
	Unresolved int // outcome still unknown at the end; -1 if the column cannot resolve
	Crashed    int // calls in flight when the client was stopped abruptly (-crash)

	// How the reconciler settled the outcomes it settled.
	ByWebhook, ByVerify, ByResend, NeedsHuman int

	Duplicates int // charges beyond the first, summed over orders
	Lost       int // charged but not known to be, or confirmed but not charged

	ClientRequests   int64 // requests the client put on the wire
	Client429s       int64 // 429s the client received
	ServerRequests   int   // requests that arrived at the server
	ServerRateLimits int   // 429s the server sent
	Escalations      int

	Reasons string // why the column retried and stopped retrying, "" if it cannot tell
	Journal string // what the column's journal file holds at rest, "" if it has none

	P50, P99 time.Duration // latency of a payment call, retries and waits included
	Wall     time.Duration // the whole column, resolution included
}

// run sends the workload through every column, each against a fresh
// simulator with the same seed.
func run(cfg config, prog *progress) []result {
	rn := runner{cfg: cfg, prog: prog, payments: newPayments(cfg.Payments)}
	results := make([]result, 0, len(columns))
	for _, col := range columns {
		results = append(results, rn.column(col))
	}
	return results
}

// runner sends a workload, one column at a time.
type runner struct {
	cfg      config
	prog     *progress
	payments []payment
}

// column sends every payment through col against a fresh simulator, settles
// what can be settled, and audits the outcome against the ledger.
func (rn runner) column(col column) result {
	cfg := rn.cfg
	opts := []spotflowtest.Option{spotflowtest.WithSeed(cfg.Seed), spotflowtest.WithFaults(cfg.serverFaults())}
	if cfg.Rate > 0 {
		opts = append(opts, spotflowtest.WithRateLimit(cfg.Rate, cfg.Burst))
	}
	if col.Webhooks {
		// Signed, at least once: a few twice, a few late. No URL until
		// the column's receiver is listening.
		opts = append(opts, spotflowtest.WithWebhooks(spotflowtest.Webhooks{Duplicates: 0.05, OutOfOrder: 0.05}))
	}
	srv := spotflowtest.NewServer(opts...)
	defer srv.Close()
	base := newBase(cfg.Workers)
	defer base.CloseIdleConnections()
	w := &wire{base: base}
	s := col.New(target{BaseURL: srv.BaseURL(), Key: srv.SecretKey(), Base: w, Cfg: cfg, Sim: srv})

	if c, ok := s.(io.Closer); ok {
		defer c.Close()
	}

	start := time.Now()
	outs := make([]outcome, len(rn.payments))
	r := result{Name: col.Name, Asked: len(outs), Unresolved: -1}
	if cr, ok := s.(crasher); ok && cfg.Crash {
		rn.sendCrashing(col.Name, cr, outs, &r)
	} else {
		rn.each(col.Name, indices(len(outs)), func(i int) {
			outs[i] = s.send(context.Background(), rn.payments[i])
		})
	}

	took := make([]time.Duration, len(outs))
	for i, o := range outs {
		took[i] = o.took
		if o.state == unknown {
			r.Unknown++
		}
	}
	r.P50, r.P99 = percentile(took, 0.50), percentile(took, 0.99)
	if st, ok := s.(settler); ok {
		rn.prog.phase(col.Name+": settling the unknown outcomes from the journal", func() {
			st.settle(context.Background(), rn.payments, outs, &r)
		})
	}
	r.Wall = time.Since(start)

	if rs, ok := s.(interface{ reasons() string }); ok {
		r.Reasons = rs.reasons()
	}
	r.audit(srv.Payments(), rn.payments, outs)
	r.ClientRequests, r.Client429s = w.sent.Load(), w.tooMany.Load()
	st := srv.Stats()
	r.ServerRequests, r.ServerRateLimits = st.Requests, st.RateLimited
	return r
}

// each calls fn for every index in idx from cfg.Workers goroutines, and
// returns when all calls have.
func (rn runner) each(phase string, idx []int, fn func(i int)) {
	var next, done atomic.Int64
	stop := rn.prog.start(phase, len(idx), &done)
	defer stop()
	var wg sync.WaitGroup
	for range min(rn.cfg.Workers, len(idx)) {
		wg.Go(func() {
			for {
				j := int(next.Add(1) - 1)
				if j >= len(idx) {
					return
				}
				fn(idx[j])
				done.Add(1)
			}
		})
	}
	wg.Wait()
}

func indices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// audit compares what the merchant was told with the simulator's ledger.
func (r *result) audit(ledger []spotflowtest.Payment, payments []payment, outs []outcome) {
	charged := make(map[string]int, len(payments))
	for _, p := range ledger {
		charged[p.Metadata["order_id"]]++
	}
	for i, p := range payments {
		n, o := charged[p.OrderID], outs[i]
		r.Duplicates += max(n-1, 0)
		if o.escalated {
			r.Escalations++
		}
		switch o.state {
		case confirmed:
			r.Confirmed++
			if n == 0 {
				r.Lost++ // told "charged", but nothing was
			}
		case failed:
			r.Failed++
			if n > 0 {
				r.Lost++ // told "not charged", but it was
			}
		case unknown:
			if n > 0 && o.key == "" {
				r.Lost++ // charged, and no way to find out which payment it was
			}
		}
	}
}

// newRequest builds the payment request with a fresh body reader, so that
// GetBody is set and the request can be sent again.
func (api target) newRequest(ctx context.Context, p payment) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api.BaseURL+"/payments", bytes.NewReader(p.Body))
	if err != nil {
		panic(err) // the URL is the simulator's own
	}
	req.Header.Set("Authorization", "Bearer "+api.Key)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// plain sends each payment once: what comes back is what the merchant
// believes.
type plain struct {
	api    target
	client *http.Client
}

func newPlain(api target) plain {
	return plain{api: api, client: &http.Client{Transport: api.Base}}
}

func (s plain) send(ctx context.Context, p payment) outcome {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.api.Cfg.Timeout)
	defer cancel()
	o := s.once(ctx, p)
	o.took = time.Since(start)
	return o
}

func (s plain) once(ctx context.Context, p payment) outcome {
	resp, err := s.client.Do(s.api.newRequest(ctx, p))
	if err != nil {
		return outcome{state: unknown} // it may have been sent and charged
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	o := outcome{escalated: spotflowhttp.Classify(resp.StatusCode, "") == spotflowhttp.CategoryEscalate}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		o.state = confirmed
	case resp.StatusCode >= 500:
		o.state = unknown
	default:
		o.state = failed
	}
	return o
}

// naive is the hand-written retry loop: on an error or a 5xx, build a new
// request and send it again, up to 3 more times. Without an idempotency key
// or a reference, a retry after a 500 or a reset that came after the charge
// charges again.
type naive struct{ plain }

const naiveRetries = 3

func (s naive) send(ctx context.Context, p payment) outcome {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.api.Cfg.Timeout)
	defer cancel()
	var o outcome
	for attempt := 1; ; attempt++ {
		o = s.once(ctx, p)
		if o.state != unknown || attempt > naiveRetries || !sleep(ctx, time.Duration(attempt)*200*time.Millisecond) {
			break
		}
	}
	o.took = time.Since(start)
	return o
}

// protected sends through spotflowhttp.NewTransport with a file journal
// (see journal.go). Each payment's idempotency key is its order id; a call
// that ends uncertain is left to the journal, whose reconciler settles it.
type protected struct {
	plain
	seen *reasons
	jr   *journaled
}

func newProtected(api target) sender {
	s := &protected{seen: newReasons()}
	s.api = api
	s.jr = openJournaled(api)
	s.client = s.jr.client(s.seen)
	return s
}

// Close removes the journal.
func (s *protected) Close() error { return s.jr.close() }

func (s *protected) reasons() string { return s.seen.String() }

// protectedOptions are the options column (c) adds: the key written into
// the body's reference, so Spotflow itself deduplicates; duplicate_reference
// resolved to the existing payment; and pacing below the account's rate
// limit, with some headroom, as an integration that knows its limit would
// (the WithLiveKeyRateLimit preset, against the real API).
func protectedOptions(cfg config) []spotflowhttp.Option {
	opts := []spotflowhttp.Option{
		spotflowhttp.WithReference("reference"),
		spotflowhttp.WithResolveDuplicates(),
	}
	if r, burst := clientRate(cfg); r > 0 {
		opts = append(opts, spotflowhttp.WithRateLimit(rate.Limit(r), burst))
	}
	return opts
}

// clientRate is the pace of column (c): 90 % of the server's limit.
func clientRate(cfg config) (perSecond float64, burst int) {
	if cfg.Rate <= 0 {
		return 0, 0
	}
	return cfg.Rate * 0.9, cfg.Burst
}

func protectedAbout(cfg config) string {
	opts := `WithReference("reference"), WithResolveDuplicates()`
	if r, burst := clientRate(cfg); r > 0 {
		opts += fmt.Sprintf(", WithRateLimit(%g, %d)", r, burst)
	}
	return "http.Client{Transport: spotflowhttp.NewTransport(base, " + opts + ")};\n" +
		"                  with WithJournal(SealJournal(boltjournal file, key)); key per payment: its order id (ContextWithIdempotencyKey);\n" +
		"                  uncertain calls are settled by a Reconciler: webhook, else verify, else re-send with the key"
}

func (s *protected) send(ctx context.Context, p payment) outcome {
	return s.sendKey(ctx, p, p.OrderID)
}

func (s *protected) sendKey(ctx context.Context, p payment, key string) outcome {
	start := time.Now()
	ctx, cancel := context.WithTimeout(spotflowhttp.ContextWithIdempotencyKey(ctx, key), s.api.Cfg.Timeout)
	defer cancel()
	o := outcome{key: key}
	resp, err := s.client.Do(s.api.newRequest(ctx, p))
	o.took = time.Since(start)
	var e *spotflowhttp.Error
	if err != nil {
		if !errors.As(err, &e) {
			o.state = unknown // not from the stack: assume the worst
			return o
		}
	} else {
		o.replayed = resp.Header.Get("Idempotent-Replayed") == "true" || spotflowhttp.ReplayOf(resp)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if e = spotflowhttp.ErrorOf(resp); e == nil {
			o.state = confirmed
			return o
		}
	}
	o.escalated = e.Category == spotflowhttp.CategoryEscalate
	if e.IdempotencyKey != "" {
		o.key = e.IdempotencyKey
	}
	if e.Uncertain {
		o.state = unknown
	} else {
		o.state = failed
	}
	return o
}

// sleep waits d or until ctx is done, and reports whether the wait ended
// with ctx still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// percentile returns the q-quantile of ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// newBase is the transport under every column: http.DefaultTransport's
// settings, with enough idle connections for every worker, so that the
// columns measure the clients and not connection churn.
func newBase(workers int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 2 * workers
	t.MaxIdleConnsPerHost = 2 * workers
	return t
}

// wire counts what a client puts on the wire and the 429s it gets back,
// below any retry logic.
type wire struct {
	base    http.RoundTripper
	sent    atomic.Int64
	tooMany atomic.Int64
}

func (w *wire) RoundTrip(req *http.Request) (*http.Response, error) {
	w.sent.Add(1)
	resp, err := w.base.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		w.tooMany.Add(1)
	}
	return resp, err
}
