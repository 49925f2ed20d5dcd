package spotflowtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

var proxyHTML = regexp.MustCompile(`^<html><body><h1>(502 Bad Gateway|503 Service Unavailable|504 Gateway Timeout)</h1></body></html>$`)

func TestRateLimit(t *testing.T) {
	clock := newFakeClock()
	t0 := clock.Now().Unix()
	h := newHarness(t, spotflowtest.WithClock(clock.Now), spotflowtest.WithRateLimit(1, 2))
	verify := func(headers ...string) result {
		return h.do("GET", "/payments/verify?reference=x", "", headers...)
	}
	steps := []struct {
		name       string
		advance    time.Duration
		auth       string
		status     int
		remaining  string
		reset      int64
		retryAfter string
	}{
		{"first of burst", 0, "", 404, "1", t0 + 1, ""},
		{"second of burst", 0, "", 404, "0", t0 + 2, ""},
		{"empty bucket", 0, "", 429, "0", t0 + 2, "1"},
		{"half a token", 500 * time.Millisecond, "", 429, "0", t0 + 2, "1"},
		{"one token", 500 * time.Millisecond, "", 404, "0", t0 + 3, ""},
		{"refilled, bad key spends nothing", 5 * time.Second, "Bearer nope", 401, "2", t0 + 6, ""},
		{"refilled", 0, "", 404, "1", t0 + 7, ""},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		var r result
		if st.auth != "" {
			r = verify("Authorization", st.auth)
		} else {
			r = verify()
		}
		if r.status != st.status {
			t.Fatalf("%s: got %v, want %d", st.name, r, st.status)
		}
		if got := r.header.Get("X-RateLimit-Limit"); got != "2" {
			t.Errorf("%s: X-RateLimit-Limit = %q, want 2", st.name, got)
		}
		if got := r.header.Get("X-RateLimit-Remaining"); got != st.remaining {
			t.Errorf("%s: X-RateLimit-Remaining = %q, want %s", st.name, got, st.remaining)
		}
		if got := r.header.Get("X-RateLimit-Reset"); got != strconv.FormatInt(st.reset, 10) {
			t.Errorf("%s: X-RateLimit-Reset = %q, want %d", st.name, got, st.reset)
		}
		if got := r.header.Get("Retry-After"); got != st.retryAfter {
			t.Errorf("%s: Retry-After = %q, want %q", st.name, got, st.retryAfter)
		}
		if st.status == 429 && r.body != rateLimitExceeded {
			t.Errorf("%s: body %s", st.name, r.body)
		}
	}
	if got := h.s.Stats().RateLimited; got != 2 {
		t.Errorf("RateLimited = %d, want 2", got)
	}
}

func TestRetryAfterRoundsUp(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, spotflowtest.WithClock(clock.Now), spotflowtest.WithRateLimit(0.25, 1))
	want := []string{"", "4", "3", "1", ""}
	advance := []time.Duration{0, 0, 1500 * time.Millisecond, 2 * time.Second, 500 * time.Millisecond}
	for i := range want {
		clock.Advance(advance[i])
		r := h.do("GET", "/payments/verify?reference=x", "")
		if got := r.header.Get("Retry-After"); got != want[i] {
			t.Errorf("step %d: Retry-After = %q, want %q (%v)", i, got, want[i], r)
		}
	}
}

func TestRateLimitHeadersOff(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, spotflowtest.WithClock(clock.Now), spotflowtest.WithRateLimit(1, 1), spotflowtest.WithRateLimitHeaders(false))
	h.do("GET", "/payments/verify?reference=x", "")
	r := h.do("GET", "/payments/verify?reference=x", "")
	if r.status != 429 || r.header.Get("Retry-After") != "1" {
		t.Errorf("got %v, want 429 with Retry-After", r)
	}
	if r.header.Get("X-RateLimit-Limit") != "" {
		t.Errorf("rate-limit headers sent while off: %v", r.header)
	}
	// Without a limit there are no headers either.
	h2 := newHarness(t)
	if r := h2.do("GET", "/payments/verify?reference=x", ""); r.header.Get("X-RateLimit-Limit") != "" {
		t.Errorf("rate-limit headers without a limit: %v", r.header)
	}
}

// TestScheduledFaults runs each fault on a first attempt and checks what was
// committed and what the retry with the same key gets.
func TestScheduledFaults(t *testing.T) {
	tests := []struct {
		fault     spotflowtest.Fault
		check     func(t *testing.T, r result)
		committed bool
		stat      func(spotflowtest.Stats) int
	}{
		{spotflowtest.FaultProxyError, func(t *testing.T, r result) {
			if r.status < 502 || r.status > 504 || !proxyHTML.MatchString(r.body) || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Errorf("got %v %v, want a proxy error", r, r.header)
			}
		}, false, func(s spotflowtest.Stats) int { return s.ProxyErrors }},
		{spotflowtest.FaultServerErrorBeforeCommit, wantResponse(500, serverError), false, func(s spotflowtest.Stats) int { return s.ServerErrors }},
		{spotflowtest.FaultResetBeforeCommit, wantReset, false, func(s spotflowtest.Stats) int { return s.Resets }},
		{spotflowtest.FaultServerErrorAfterCommit, wantResponse(500, serverError), true, func(s spotflowtest.Stats) int { return s.ServerErrors }},
		{spotflowtest.FaultResetAfterCommit, wantReset, true, func(s spotflowtest.Stats) int { return s.Resets }},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String(), func(t *testing.T) {
			h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Schedule: []spotflowtest.Fault{tt.fault}}))
			body := paymentBody("ref-1", 5000, "o-1")
			tt.check(t, h.do("POST", "/payments", body, "Idempotency-Key", "k"))
			if got, want := h.s.Charges("ref-1"), map[bool]int{false: 0, true: 1}[tt.committed]; got != want {
				t.Fatalf("Charges after the fault = %d, want %d", got, want)
			}
			if got := tt.stat(h.s.Stats()); got != 1 {
				t.Errorf("fault counted %d times, want 1", got)
			}

			retry := h.do("POST", "/payments", body, "Idempotency-Key", "k")
			if retry.status != 201 {
				t.Fatalf("retry: %v", retry)
			}
			if got := retry.header.Get("Idempotent-Replayed") == "true"; got != tt.committed {
				t.Errorf("retry replayed = %v, want %v", got, tt.committed)
			}
			verified := h.do("GET", "/payments/verify?reference=ref-1", "")
			if verified.status != 200 || verified.body != retry.body {
				t.Errorf("verify %v, retry %v: want the same object", verified, retry)
			}
			if got := h.s.Charges("ref-1"); got != 1 {
				t.Errorf("Charges after retry = %d, want 1", got)
			}
		})
	}
}

func wantResponse(status int, body string) func(*testing.T, result) {
	return func(t *testing.T, r result) {
		t.Helper()
		if r.err != nil || r.status != status || r.body != body {
			t.Errorf("got %v, want %d %s", r, status, body)
		}
	}
}

// wantReset checks a reset surfaced as a transport error, not a response.
func wantReset(t *testing.T, r result) {
	t.Helper()
	if r.err == nil {
		t.Errorf("got response %v, want a connection error", r)
	}
}

// TestResetWithoutKey shows what a reset costs a client that retries without
// an Idempotency-Key: with a reference the retry is refused as a duplicate;
// without one the customer is charged twice, which CountMetadata reveals.
func TestResetWithoutKey(t *testing.T) {
	h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit}}))
	wantReset(t, h.do("POST", "/payments", paymentBody("ref-1", 5000, "o-1")))
	if r := h.do("POST", "/payments", paymentBody("ref-1", 5000, "o-1")); r.body != duplicateReference {
		t.Errorf("retry with reference: %v", r)
	}
	wantReset(t, h.do("POST", "/payments", paymentBody("", 5000, "o-2")))
	if r := h.do("POST", "/payments", paymentBody("", 5000, "o-2")); r.status != 201 {
		t.Errorf("retry without reference: %v", r)
	}
	if got := h.s.CountMetadata("order_id", "o-2"); got != 2 {
		t.Errorf("CountMetadata(o-2) = %d, want 2 (charged twice)", got)
	}
}

// TestConcurrentRetriesUnderFaults: 50 goroutines retry one payment with one
// key through every kind of fault; exactly one payment exists and every
// goroutine ends with the same success.
func TestConcurrentRetriesUnderFaults(t *testing.T) {
	h := newHarness(t, spotflowtest.WithSeed(7), spotflowtest.WithFaults(spotflowtest.Faults{
		ProxyError:              0.1,
		ServerErrorBeforeCommit: 0.1,
		ResetBeforeCommit:       0.1,
		ServerErrorAfterCommit:  0.2,
		ResetAfterCommit:        0.2,
	}))
	body := paymentBody("ref-f", 900, "o-f")
	const n = 50
	bodies := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; attempt < 100; attempt++ {
				r := h.do("POST", "/payments", body, "Idempotency-Key", "one-key")
				if r.err == nil && r.status == 201 {
					bodies[i] = r.body
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, b := range bodies {
		if b == "" || b != bodies[0] {
			t.Fatalf("goroutine %d ended with %q, want %q", i, b, bodies[0])
		}
	}
	if got := len(h.s.Payments()); got != 1 {
		t.Errorf("%d payments, want 1", got)
	}
	st := h.s.Stats()
	if st.Created != 1 || st.Replayed < n-1 {
		t.Errorf("stats = %+v", st)
	}
	if st.ProxyErrors+st.ServerErrors+st.Resets == 0 {
		t.Errorf("no faults injected: %+v", st)
	}
}

func TestFaultProbabilities(t *testing.T) {
	h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{ServerErrorBeforeCommit: 0.3}))
	const n = 300
	errs := 0
	for i := range n {
		r := h.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o"))
		switch r.status {
		case 500:
			errs++
		case 201:
		default:
			t.Fatalf("unexpected %v", r)
		}
	}
	if errs < n*2/10 || errs > n*4/10 {
		t.Errorf("%d of %d requests failed, want about 30%%", errs, n)
	}

	always := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{ServerErrorBeforeCommit: 1, ProxyError: 0}))
	for i := range 10 {
		if r := always.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o")); r.status != 500 {
			t.Fatalf("probability 1: got %v", r)
		}
	}
}

// TestReadFaults: reads are spared unless Faults.Reads is set.
func TestReadFaults(t *testing.T) {
	faults := spotflowtest.Faults{ServerErrorBeforeCommit: 1}
	h := newHarness(t, spotflowtest.WithFaults(faults))
	if r := h.do("GET", "/payments/verify?reference=x", ""); r.status != 404 {
		t.Errorf("read faulted without Reads: %v", r)
	}
	faults.Reads = true
	h = newHarness(t, spotflowtest.WithFaults(faults))
	if r := h.do("GET", "/transfers/reference/x", ""); r.status != 500 {
		t.Errorf("read not faulted with Reads: %v", r)
	}
	after := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Reads: true, Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit}}))
	wantReset(t, after.do("GET", "/payments/verify?reference=x", ""))
	if r := after.do("GET", "/payments/verify?reference=x", ""); r.status != 404 {
		t.Errorf("second read: %v", r)
	}
}

// TestDeterminism runs the same request sequence against two servers with
// the same seed and expects identical outcomes, and different ones under
// another seed.
func TestDeterminism(t *testing.T) {
	run := func(seed int64) []string {
		h := newHarness(t, spotflowtest.WithSeed(seed), spotflowtest.WithFaults(spotflowtest.Faults{
			ProxyError:              0.1,
			ServerErrorBeforeCommit: 0.1,
			ResetBeforeCommit:       0.1,
			ServerErrorAfterCommit:  0.1,
			ResetAfterCommit:        0.1,
			Reads:                   true,
		}))
		var out []string
		for i := range 15 {
			body := paymentBody(fmt.Sprint("ref-", i), 100, "o")
			for range 2 { // a keyed request and its retry
				out = append(out, outcome(h.do("POST", "/payments", body, "Idempotency-Key", fmt.Sprint("k-", i))))
			}
			out = append(out, outcome(h.do("POST", "/payments", paymentBody("", 100, fmt.Sprint("o-", i)))))
			out = append(out, outcome(h.do("GET", fmt.Sprint("/payments/verify?reference=ref-", i), "")))
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed, different outcomes:\n%v\n%v", a, b)
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Errorf("different seeds, same outcomes: %v", a)
	}
}

// outcome summarises a result without the generated identifiers.
func outcome(r result) string {
	if r.err != nil {
		return "reset"
	}
	if r.header.Get("Idempotent-Replayed") == "true" {
		return fmt.Sprint(r.status, "-replayed")
	}
	return fmt.Sprint(r.status)
}

func TestOutages(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, spotflowtest.WithClock(clock.Now), spotflowtest.WithFaults(spotflowtest.Faults{
		Outages: []spotflowtest.Window{{Start: 10 * time.Second, Duration: 5 * time.Second}},
	}))
	verify := func() result { return h.do("GET", "/payments/verify?reference=x", "") }
	steps := []struct {
		name    string
		advance time.Duration
		outage  bool
	}{
		{"before", 9 * time.Second, false},
		{"start", time.Second, true},
		{"inside", 4 * time.Second, true},
		{"end is exclusive", time.Second, false},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		r := verify()
		if st.outage != (r.status == 503) {
			t.Errorf("%s: got %v, want outage %v", st.name, r, st.outage)
		}
		if st.outage && (r.body != outageHTML || r.header.Get("Content-Type") != "text/html; charset=utf-8") {
			t.Errorf("%s: outage response %v %v", st.name, r, r.header)
		}
	}

	h.s.StartOutage(2 * time.Second)
	if r := h.do("POST", "/payments", paymentBody("r", 1, "o"), "Authorization", "Bearer wrong"); r.status != 503 {
		t.Errorf("outage must answer before authentication: %v", r)
	}
	if r := h.do("POST", "/payments", paymentBody("r", 1, "o"), "Idempotency-Key", "k"); r.status != 503 {
		t.Errorf("StartOutage: %v", r)
	}
	clock.Advance(2 * time.Second)
	if r := verify(); r.status != 404 {
		t.Errorf("after StartOutage window: %v", r)
	}
	st := h.s.Stats()
	if st.OutageErrors != 4 || st.Requests != 7 || st.Created != 0 {
		t.Errorf("stats = %+v", st)
	}
	if got := h.s.Arrivals("k"); got != 1 {
		t.Errorf("Arrivals(k) = %d, want 1: an outage still counts the arrival", got)
	}
}

func TestLatency(t *testing.T) {
	t.Run("added", func(t *testing.T) {
		h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Latency: 30 * time.Millisecond, LatencyJitter: 20 * time.Millisecond}))
		start := time.Now()
		if r := h.do("GET", "/payments/verify?reference=x", ""); r.status != 404 {
			t.Fatal(r)
		}
		if el := time.Since(start); el < 30*time.Millisecond {
			t.Errorf("took %v, want at least 30ms", el)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Minute}))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		r := h.doContext(ctx, "POST", "/payments", paymentBody("r", 1, "o"))
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("got %v, want a deadline error", r)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %v", el)
		}
		h.s.Close()
		if len(h.s.Payments()) != 0 {
			t.Error("a canceled request was committed")
		}
	})
	t.Run("close during latency", func(t *testing.T) {
		h := newHarness(t, spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Minute}))
		done := make(chan result, 1)
		go func() { done <- h.do("GET", "/payments/verify?reference=x", "") }()
		for h.s.Stats().Requests == 0 {
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		h.s.Close()
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("Close took %v", el)
		}
		if r := <-done; r.err == nil {
			t.Errorf("request survived Close: %v", r)
		}
	})
}

// TestNoLeakAfterClose exercises resets, latency and keep-alive connections,
// then checks Close leaves no goroutine behind.
func TestNoLeakAfterClose(t *testing.T) {
	if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
		t.Fatalf("goroutines left by earlier tests:\n%s", leaked)
	}
	s := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		ResetAfterCommit:  0.3,
		ResetBeforeCommit: 0.1,
		Latency:           time.Millisecond,
	}))
	client := s.Client()
	for i := range 20 {
		req, _ := http.NewRequest("POST", s.BaseURL()+"/payments", strings.NewReader(paymentBody(fmt.Sprint("r-", i), 1, "o")))
		req.Header.Set("Authorization", "Bearer "+s.SecretKey())
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	s.Close()
	if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
		t.Errorf("goroutines left after Close:\n%s", leaked)
	}
}
