package spotflowhttp_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/spotflow-go/spotflowhttp"
)

// Only CategoryRetry is retried; every other category goes back after one
// attempt.
func TestRetryOnlyRetryCategory(t *testing.T) {
	for _, row := range policyRows {
		t.Run(row.name, func(t *testing.T) {
			s := newScript(t, reply(row.status, row.body))
			clock := newFakeClock()
			resp := get(t, spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxRetryAfter(time.Hour), spotflowhttp.WithServerErrorDelay(0)), s.srv.URL)
			want := 1
			if row.category == spotflowhttp.CategoryRetry {
				want = spotflowhttp.DefaultMaxAttempts
			}
			if got := int(s.hits.Load()); got != want {
				t.Errorf("server hits = %d, want %d", got, want)
			}
			if e := spotflowhttp.ErrorOf(resp); e == nil || e.Attempts != want {
				t.Errorf("ErrorOf = %v, want %d attempts", e, want)
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != row.body {
				t.Errorf("final body = %q, want %q", b, row.body)
			}
		})
	}
}

// The default backoff: 500 ms, ×2, ±50 %, capped at 30 s.
func TestDefaultBackoff(t *testing.T) {
	s := newScript(t, unavailable)
	clock := newFakeClock()
	get(t, spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(9)), s.srv.URL)
	sleeps := clock.Sleeps()
	if len(sleeps) != 8 {
		t.Fatalf("sleeps = %v, want 8", sleeps)
	}
	base := 500 * time.Millisecond
	for i, d := range sleeps {
		lo, hi := base/2, base*3/2
		if d < lo || d > hi {
			t.Errorf("wait %d = %v, want within [%v, %v]", i+1, d, lo, hi)
		}
		base = min(base*2, 30*time.Second)
	}
}

func TestRetryAfter(t *testing.T) {
	date := func(c *fakeClock, d time.Duration) string { return c.Now().Add(d).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name     string
		header   func(*fakeClock) string
		hits     int
		firstMin time.Duration
		firstMax time.Duration
	}{
		{"seconds", func(*fakeClock) string { return "7" }, 4, 7 * time.Second, 7 * time.Second},
		{"http date", func(c *fakeClock) string { return date(c, 12*time.Second) }, 4, 11 * time.Second, 12 * time.Second},
		{"missing falls back to backoff", func(*fakeClock) string { return "" }, 4, 250 * time.Millisecond, 750 * time.Millisecond},
		{"garbage falls back to backoff", func(*fakeClock) string { return "soon" }, 4, 250 * time.Millisecond, 750 * time.Millisecond},
		{"above the cap goes back at once", func(*fakeClock) string { return "61" }, 1, 0, 0},
		{"date above the cap", func(c *fakeClock) string { return date(c, 2*time.Hour) }, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newScript(t, func(w http.ResponseWriter, r *http.Request) { rateLimited(tt.header(clock))(w, r) })
			resp := get(t, spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(clock)), s.srv.URL)
			if got := int(s.hits.Load()); got != tt.hits {
				t.Fatalf("hits = %d, want %d", got, tt.hits)
			}
			if resp.StatusCode != 429 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			sleeps := clock.Sleeps()
			if tt.hits == 1 {
				if len(sleeps) != 0 {
					t.Errorf("slept %v, want no wait", sleeps)
				}
				if e := spotflowhttp.ErrorOf(resp); e.RetryAfter <= time.Minute {
					t.Errorf("RetryAfter = %v", e.RetryAfter)
				}
				return
			}
			if sleeps[0] < tt.firstMin || sleeps[0] > tt.firstMax {
				t.Errorf("first wait %v, want within [%v, %v]", sleeps[0], tt.firstMin, tt.firstMax)
			}
		})
	}
}

// server_error is not retried sooner than the documented 30 s; other 5xx
// use the backoff.
func TestServerErrorDelay(t *testing.T) {
	for _, tt := range []struct {
		name  string
		step  func(http.ResponseWriter, *http.Request)
		opts  []spotflowhttp.Option
		least time.Duration
		most  time.Duration
	}{
		{"server_error", serverError, nil, 30 * time.Second, 30 * time.Second},
		{"server_error configured", serverError, []spotflowhttp.Option{spotflowhttp.WithServerErrorDelay(2 * time.Second)}, 2 * time.Second, 2 * time.Second},
		{"500 without code", reply(500, ""), nil, 250 * time.Millisecond, 750 * time.Millisecond},
		{"502", reply(502, ""), nil, 250 * time.Millisecond, 750 * time.Millisecond},
		{"504", reply(504, ""), nil, 250 * time.Millisecond, 750 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newScript(t, tt.step, ok200)
			clock := newFakeClock()
			resp := get(t, spotflowhttp.NewTransport(nil, append(tt.opts, spotflowhttp.WithClock(clock))...), s.srv.URL)
			sleeps := clock.Sleeps()
			if resp.StatusCode != 200 || len(sleeps) != 1 || sleeps[0] < tt.least || sleeps[0] > tt.most {
				t.Errorf("status %d after waits %v; want 200 after one wait in [%v, %v]", resp.StatusCode, sleeps, tt.least, tt.most)
			}
		})
	}
}

// A wait that would end after the deadline is not started: the last
// response comes back at once, annotated.
func TestDeadlineReturnsLastResponse(t *testing.T) {
	s := newScript(t, unavailable, serverError)
	clock := newFakeClock()
	ctx, cancel := context.WithDeadline(context.Background(), clock.Now().Add(10*time.Second))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.srv.URL, nil)
	resp, err := (&http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(clock))}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	e := spotflowhttp.ErrorOf(resp)
	// 503, wait ~0.5 s, server_error: its 30 s wait would pass the deadline.
	if resp.StatusCode != 500 || e.Attempts != 2 || e.Code != "server_error" || len(clock.Sleeps()) != 1 {
		t.Fatalf("status %d, %v, sleeps %v", resp.StatusCode, e, clock.Sleeps())
	}
}

// Cancelling during a wait returns promptly with context.Canceled, and the
// held response is closed. This is about real time, so it uses the real
// clock, bounded.
func TestCancelDuringWait(t *testing.T) {
	s := newScript(t, rateLimited("30"))
	counting := &closeCounting{base: http.DefaultTransport}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.srv.URL, nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := (&http.Client{Transport: spotflowhttp.NewTransport(counting)}).Do(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !errors.Is(err, spotflowhttp.ErrRateLimit) {
		t.Errorf("err = %v, want it to keep the last response's type", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("returned after %v", el)
	}
	if n := counting.unclosed(); n != 0 {
		t.Errorf("%d responses left open", n)
	}
}

// Which requests may be repeated after a failure that may have reached the
// server.
func TestRepeatable(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		body    string
		header  string
		getBody bool
		keyless bool // idempotency layer keeps out of it
		hits    int
	}{
		{"GET", "GET", "", "", false, false, 4},
		{"PUT", "PUT", `{"a":1}`, "", true, false, 4},
		{"DELETE", "DELETE", "", "", false, false, 4},
		{"POST with a generated key", "POST", `{"a":1}`, "", true, false, 4},
		{"POST without key", "POST", `{"a":1}`, "", true, true, 1},
		{"POST with a caller's key", "POST", `{"a":1}`, "k-1", true, true, 4},
		{"POST with reference", "POST", `{"reference":"ord-1","a":1}`, "", true, true, 4},
		{"POST with empty reference", "POST", `{"reference":"","a":1}`, "", true, true, 1},
		{"PATCH without key", "PATCH", `{"a":1}`, "", true, true, 1},
		{"POST without GetBody", "POST", `{"a":1}`, "k-1", false, false, 1},
	}
	refused := []struct {
		name    string
		method  string
		body    string
		header  string
		getBody bool
		keyless bool
		hits    int
	}{
		{"429 POST without key", "POST", `{"a":1}`, "", true, true, 4},
		{"429 POST without GetBody", "POST", `{"a":1}`, "", false, true, 1},
	}
	for i, tt := range append(tests, refused...) {
		t.Run(tt.name, func(t *testing.T) {
			step := unavailable
			if i >= len(tests) {
				step = rateLimited("1")
			}
			s := newScript(t, step)
			opts := []spotflowhttp.Option{spotflowhttp.WithClock(newFakeClock())}
			if tt.keyless {
				opts = append(opts, spotflowhttp.WithKeyMethods())
			}
			var body io.ReadCloser
			var counter *readCloseCounter
			var getBody func() (io.ReadCloser, error)
			if tt.body != "" {
				counter, getBody = newBody(tt.body)
				body = counter
			}
			req, _ := http.NewRequest(tt.method, s.srv.URL, nil)
			req.Body = body
			req.ContentLength = int64(len(tt.body))
			if tt.getBody {
				req.GetBody = getBody
			}
			if tt.header != "" {
				req.Header.Set("Idempotency-Key", tt.header)
			}
			resp, err := spotflowhttp.NewTransport(nil, opts...).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := int(s.hits.Load()); got != tt.hits {
				t.Errorf("hits = %d, want %d", got, tt.hits)
			}
			if counter != nil && counter.closes.Load() != 1 {
				t.Errorf("request body closed %d times, want 1", counter.closes.Load())
			}
		})
	}
}

// A connection error where the request surely never left is retried for
// any method; one after which it may have been sent only for requests that
// may be repeated.
func TestConnectionErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()

	t.Run("refused POST without key is retried", func(t *testing.T) { connRefusedPOSTWithoutKeyIsRetried(t, refused) })
	t.Run("reset POST without key is not retried", connResetPOSTWithoutKeyIsNotRetried)
	t.Run("reset POST with key is retried", connResetPOSTWithKeyIsRetried)
	t.Run("uncertainty sticks when a later attempt surely did not leave", connUncertaintySticks)
}

// A refused dial never sent the request, so even a POST without a key is
// retried, and the call is certain.
func connRefusedPOSTWithoutKeyIsRetried(t *testing.T, refused string) {
	var events []spotflowhttp.RetryEvent
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithKeyMethods(),
		spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) { events = append(events, ev) }))
	body, getBody := newBody(`{"a":1}`)
	req, _ := http.NewRequest("POST", refused, body)
	req.GetBody = getBody
	_, err := tr.RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrAPIConnection) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v", err)
	}
	if e.Uncertain || e.Attempts != 4 || len(events) != 3 {
		t.Errorf("Uncertain %v, Attempts %d, retries %d; want false, 4, 3", e.Uncertain, e.Attempts, len(events))
	}
	if body.closes.Load() != 1 {
		t.Errorf("request body closed %d times", body.closes.Load())
	}
}

// After a reset the POST may have been processed, and without a key a
// second one could charge twice: not retried, uncertain.
func connResetPOSTWithoutKeyIsNotRetried(t *testing.T) {
	s := newScript(t, hangUp)
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithKeyMethods())
	req, _ := http.NewRequest("POST", s.srv.URL, strings.NewReader(`{"a":1}`))
	_, err := tr.RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrAPIConnection) {
		t.Fatalf("err = %v", err)
	}
	if !e.Uncertain || e.Attempts != 1 || s.hits.Load() != 1 || e.IdempotencyKey != "" {
		t.Errorf("got %#v after %d hits", e, s.hits.Load())
	}
}

// With a key the server deduplicates, so the POST is retried under that
// one key, and ends uncertain.
func connResetPOSTWithKeyIsRetried(t *testing.T) {
	s := newScript(t, hangUp)
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(newFakeClock()))
	req, _ := http.NewRequest("POST", s.srv.URL, strings.NewReader(`{"a":1}`))
	_, err := tr.RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !e.Uncertain || e.Attempts != 4 || s.hits.Load() != 4 || e.IdempotencyKey == "" {
		t.Fatalf("err = %v, hits %d", err, s.hits.Load())
	}
	var netErr net.Error
	if !errors.As(err, &netErr) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Err = %v, want the network error", e.Err)
	}
	for _, k := range s.seenKeys() {
		if k != e.IdempotencyKey {
			t.Errorf("keys seen %v, want all %q", s.seenKeys(), e.IdempotencyKey)
		}
	}
}

// An attempt that may have been processed keeps the call uncertain,
// whatever the later attempts say.
func connUncertaintySticks(t *testing.T) {
	var n int
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		n++
		if n == 1 {
			return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	})
	_, err := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock())).RoundTrip(
		mustRequest(t, "GET", "https://api.spotflow.co/api/v1/payments/verify?reference=x", ""))
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !e.Uncertain || e.Attempts != 4 {
		t.Fatalf("err = %#v", err)
	}
}

// The retry budget keeps a full outage from multiplying traffic, absorbs a
// blip, and refills after recovery.
func TestRetryBudget(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var hits atomic.Int64
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		hits.Add(1)
		status := 200
		if down.Load() {
			status = 503
		}
		return &http.Response{StatusCode: status, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	var retries atomic.Int64
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithOnRetry(func(context.Context, spotflowhttp.RetryEvent) { retries.Add(1) }))
	const n = 1000
	for i := 0; i < n; i++ {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	perRequest := float64(hits.Load()) / n
	t.Logf("outage: %d requests, %d server hits, %.3f hits per request, %d retries", n, hits.Load(), perRequest, retries.Load())
	if perRequest > 1.2 {
		t.Errorf("hits per request = %.3f, want <= 1.2", perRequest)
	}
	if retries.Load() < 50 {
		t.Errorf("a fresh transport made %d retries, want a burst of at least 50", retries.Load())
	}

	// Recovery: successes refill the budget and retries come back.
	down.Store(false)
	for i := 0; i < 100; i++ {
		resp, _ := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
		resp.Body.Close()
	}
	down.Store(true)
	before := retries.Load()
	resp, _ := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
	resp.Body.Close()
	if got := retries.Load() - before; got != 3 {
		t.Errorf("after recovery a call made %d retries, want 3", got)
	}

	// Disabled budget: every call retries.
	hits.Store(0)
	tr = spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithRetryBudget(0))
	for i := 0; i < 200; i++ {
		resp, _ := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
		resp.Body.Close()
	}
	if hits.Load() != 800 {
		t.Errorf("without budget: %d hits for 200 calls, want 800", hits.Load())
	}
}

// A call that succeeds after retrying gets its retries back into the
// budget, as WithRetryBudget documents: with a budget of two retries, calls
// that each need two keep succeeding.
func TestRetryBudgetRefundedOnSuccess(t *testing.T) {
	base, n := statusBase(503, 503, 200, 503, 503, 200, 503, 503, 200)
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithRetryBudget(2))
	for call := 1; call <= 3; call++ {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || *n != 3*call {
			t.Fatalf("call %d: status %d after %d requests in all; want 200 after its third attempt", call, resp.StatusCode, *n)
		}
	}
}

// A call that succeeds at once earns a fifth of a retry back, also when
// NewTransport sends it unchanged without looking its scope up: five such
// GETs after an outage spent the one retry of the budget make the next
// failure retried again.
func TestRetryBudgetEarnedBackByFirstTrySuccesses(t *testing.T) {
	base, n := statusBase(503, 503, 200, 200, 200, 200, 200, 503, 200)
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithRetryBudget(1),
		spotflowhttp.WithMaxAttempts(2), spotflowhttp.WithBackoff(constantBackoff(0)))
	for call := 1; call <= 7; call++ {
		resp, err := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if call == 7 && (resp.StatusCode != 200 || *n != 9) {
			t.Fatalf("after five successes: status %d after %d requests in all; want the 503 retried, 200 after 9", resp.StatusCode, *n)
		}
	}
}

func TestOnRetryOncePerRetryBeforeWait(t *testing.T) {
	s := newScript(t, unavailable, rateLimited("3"), ok200)
	clock := newFakeClock()
	var events []spotflowhttp.RetryEvent
	var sleepsAtEvent []int
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(clock), spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) {
		events = append(events, ev)
		sleepsAtEvent = append(sleepsAtEvent, len(clock.Sleeps()))
	}))
	resp, err := tr.RoundTrip(mustRequest(t, "POST", s.srv.URL, `{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(events) != 2 || events[0].Attempt != 1 || events[0].StatusCode != 503 || events[1].Attempt != 2 ||
		events[1].Code != "rate_limit_exceeded" || events[1].Wait != 3*time.Second || events[0].IdempotencyKey == "" ||
		events[0].IdempotencyKey != events[1].IdempotencyKey {
		t.Fatalf("events = %+v", events)
	}
	if sleepsAtEvent[0] != 0 || sleepsAtEvent[1] != 1 {
		t.Errorf("events fired after %v waits, want before each wait", sleepsAtEvent)
	}
	if spotflowhttp.IdempotencyKeyOf(resp) != events[0].IdempotencyKey {
		t.Error("key differs")
	}
}

// A backoff that stops ends the retries.
func TestBackoffStop(t *testing.T) {
	s := newScript(t, unavailable)
	resp := get(t, spotflowhttp.NewTransport(nil, spotflowhttp.WithBackoff(func() backoff.BackOff {
		return backoff.WithMaxRetries(backoff.NewConstantBackOff(0), 1)
	})), s.srv.URL)
	if e := spotflowhttp.ErrorOf(resp); e.Attempts != 2 || s.hits.Load() != 2 {
		t.Errorf("attempts %d, hits %d; want 2", e.Attempts, s.hits.Load())
	}
}

// When the rate limiter below refuses a retry (its wait would pass the
// deadline), the caller gets the last response, not a bare refusal.
func TestRefusedRetryKeepsLastResponse(t *testing.T) {
	clock := newFakeClock()
	s := newScript(t, unavailable, ok200)
	counting := &closeCounting{base: http.DefaultTransport}
	tr := spotflowhttp.NewTransport(counting, spotflowhttp.WithClock(clock), spotflowhttp.WithRateLimit(0.1, 1))
	ctx, cancel := context.WithDeadline(context.Background(), clock.Now().Add(5*time.Second))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.srv.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("err = %v, want the 503", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	e := spotflowhttp.ErrorOf(resp)
	if resp.StatusCode != 503 || string(b) != "<html>503</html>" || e == nil || e.Attempts != 1 || s.hits.Load() != 1 {
		t.Fatalf("got %d %q %v after %d hits", resp.StatusCode, b, e, s.hits.Load())
	}
	if counting.unclosed() != 0 {
		t.Errorf("%d responses left open", counting.unclosed())
	}
}

// An earlier attempt that may have been processed keeps the call uncertain,
// whatever the final answer.
func TestUncertaintySticksToResponses(t *testing.T) {
	s := newScript(t, hangUp, rateLimited("0"))
	base := &http.Transport{DisableKeepAlives: true}
	defer base.CloseIdleConnections()
	resp := post2(t, spotflowhttp.NewTransport(base, spotflowhttp.WithMaxAttempts(2), spotflowhttp.WithClock(newFakeClock())), s.srv.URL, `{"amount":1}`)
	if e := spotflowhttp.ErrorOf(resp); resp.StatusCode != 429 || !e.Uncertain || e.Attempts != 2 {
		t.Fatalf("got %d %v", resp.StatusCode, e)
	}
	// All attempts answered with a plain refusal: certain.
	s = newScript(t, rateLimited("0"))
	resp = post2(t, spotflowhttp.NewTransport(base, spotflowhttp.WithMaxAttempts(2), spotflowhttp.WithClock(newFakeClock())), s.srv.URL, `{"amount":1}`)
	if e := spotflowhttp.ErrorOf(resp); e.Uncertain || e.Attempts != 2 {
		t.Fatalf("got %v", e)
	}
}

// A failed response whose body is too large to be read whole (over 64 KiB)
// lets its connection go before the retry: held open, it would deadlock the
// next attempt with MaxConnsPerHost=1.
func TestFailedResponseReleasedBeforeRetry(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(503)
			io.WriteString(w, strings.Repeat("x", 100<<10))
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := &http.Transport{MaxConnsPerHost: 1}
	defer base.CloseIdleConnections()
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithBackoff(constantBackoff(time.Millisecond)))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("after %v: %v (hits %d)", time.Since(start).Round(time.Millisecond), err, hits.Load())
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || hits.Load() != 2 {
		t.Fatalf("status %d after %d requests, want 200 after 2", resp.StatusCode, hits.Load())
	}
}

// A connection error on attempt 1 followed by the limiter refusing the
// retry (its wait would pass the deadline) comes back as the connection
// error, not as a bare rate-limit refusal.
func TestRefusedRetryKeepsConnectionError(t *testing.T) {
	clock := newFakeClock()
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithRateLimit(0.1, 1))
	ctx, cancel := context.WithDeadline(context.Background(), clock.Now().Add(5*time.Second))
	defer cancel()
	_, err := roundTrip(t, tr, ctx, "")
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrAPIConnection) || !errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, spotflowhttp.ErrRateLimit) || !e.Uncertain || e.Attempts != 1 {
		t.Fatalf("err = %v (%#v)", err, e)
	}
}

// A very large retry budget, meant as "no limit in practice", must not
// overflow into a budget that allows no retry.
func TestLargeRetryBudgetStillRetries(t *testing.T) {
	attempts := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if attempts++; attempts == 1 {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}, nil
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithRetryBudget(math.MaxInt/4+1))
	resp, err := roundTrip(t, tr, context.Background(), "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v after %d attempts; want a retry to the 200", err, attempts)
	}
}

// A retry the rate-limit layer refuses is never sent, so it gives its token
// back to the retry budget: with a budget of one retry, a call whose retry
// the limiter refused leaves the next call its retry.
func TestRetryRefusedBelowRefundsBudget(t *testing.T) {
	base, hits := statusBase(503, 503, 200)
	var waits atomic.Int64
	lim := limiterFunc(func(context.Context) error {
		if waits.Add(1) == 2 { // the first call's retry
			return errLimiterBroken
		}
		return nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithRetryBudget(1),
		spotflowhttp.WithLimiter(lim), spotflowhttp.WithBackoff(constantBackoff(time.Second)))
	resp, err := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
	if err != nil {
		t.Fatalf("first call: %v, want the 503 it got before its retry was refused", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || *hits != 1 {
		t.Fatalf("first call: status %d after %d requests, want the 503 after 1 (its retry refused by the limiter)", resp.StatusCode, *hits)
	}
	resp, err = tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || *hits != 3 {
		t.Errorf("second call: status %d after %d requests in all, want 200 after 3: the refused retry did not give its budget back",
			resp.StatusCode, *hits)
	}
}
