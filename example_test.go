package spotflowhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A complete program against spotflowtest, Spotflow in process: the first
// attempt creates the payment and then loses its connection, so the outcome
// is unknown; the transport retries with the same idempotency key and
// Spotflow answers with the payment it already made. The README shows the
// same program.
func Example() {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer sim.Close()

	client := &http.Client{}
	client.Transport = spotflowhttp.NewTransport(client.Transport)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// amount (minor units), currency and customer.email are required.
	body := `{"reference":"order-1001","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sim.BaseURL()+"/payments", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	req.Header.Set("Content-Type", "application/json")

	resp, err := client.Do(req)
	if err != nil {
		log.Fatal(err) // no response: errors.As gives the *spotflowhttp.Error
	}
	defer resp.Body.Close()
	if e := spotflowhttp.ErrorOf(resp); e != nil {
		log.Fatal(e) // a final failure: e.Category says what to do
	}
	var payment struct{ Reference, Status string }
	if err := json.NewDecoder(resp.Body).Decode(&payment); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.StatusCode, payment.Reference, payment.Status)
	fmt.Println("replayed:", resp.Header.Get("Idempotent-Replayed"), "charges:", sim.Charges("order-1001"))
	// Output:
	// 201 order-1001 successful
	// replayed: true charges: 1
}

// The policy as a pure lookup.
func ExampleClassify() {
	fmt.Println(spotflowhttp.Classify(400, "missing_parameter"))
	fmt.Println(spotflowhttp.Classify(400, "DUPLICATE_REFERENCE"))
	fmt.Println(spotflowhttp.Classify(429, ""))
	fmt.Println(spotflowhttp.Classify(403, "AUTH_ERROR"))
	fmt.Println(spotflowhttp.Classify(200, ""))
	// Output:
	// dont_retry
	// treat_as_success
	// retry
	// escalate
	// none
}

// ErrorOf works on any response, also one from a plain http.Client.
func ExampleErrorOf() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"Bad Request","message":"insufficient_balance","status":400}`)
	}))
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/api/v1/transfers", "application/json", strings.NewReader(`{}`))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()

	e := spotflowhttp.ErrorOf(resp)
	fmt.Println(e.Code, e.Category, errors.Is(e, spotflowhttp.ErrInvalidRequest))
	body, _ := io.ReadAll(resp.Body) // still readable
	fmt.Println(string(body))
	// Output:
	// insufficient_balance escalate true
	// {"error":"Bad Request","message":"insufficient_balance","status":400}
}

// The whole integration is one line; the final response comes back as
// usual and ErrorOf tells what it means. Here the first two attempts get a
// 503 and the third succeeds.
func ExampleNewTransport() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"status":"successful"}`)
	}))
	defer srv.Close()

	client := &http.Client{}
	client.Transport = spotflowhttp.NewTransport(client.Transport,
		// Only to keep the example quick; the default backoff starts at 500 ms.
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) }))

	resp, err := client.Get(srv.URL + "/api/v1/payments/verify?reference=ord-1")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode, spotflowhttp.ErrorOf(resp) == nil, calls.Load())
	// Output: 200 true 3
}

// After the last attempt, the response is returned with its body and the
// annotation says how many attempts were made.
func ExampleErrorOf_finalFailure() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, `<html>bad gateway</html>`)
	}))
	defer srv.Close()

	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithMaxAttempts(3),
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) }))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	e := spotflowhttp.ErrorOf(resp)
	fmt.Println(e)
	fmt.Println(e.Uncertain, errors.Is(e, spotflowhttp.ErrAPI))
	// Output:
	// spotflow: 502 (retry, outcome uncertain, 3 attempts)
	// true true
}

// A deadline bounds the whole call, waits included: no wait is started that
// would end after it.
func ExampleNewTransport_deadline() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"code":"rate_limit_exceeded","message":"Too many requests"}`)
	}))
	defer srv.Close()

	client := &http.Client{Transport: spotflowhttp.NewTransport(nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	e := spotflowhttp.ErrorOf(resp)
	fmt.Println(resp.StatusCode, e.Code, e.RetryAfter, e.Attempts, time.Since(start) < time.Second)
	// Output: 429 rate_limit_exceeded 30s 1 true
}

// With WithErrors, a final failure is an error, and errors.Is matches its
// type.
func ExampleWithErrors() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"code":"invalid_credentials","message":"Invalid API key","statusCode":401}`)
	}))
	defer srv.Close()

	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithErrors())}
	_, err := client.Get(srv.URL)
	var e *spotflowhttp.Error
	fmt.Println(errors.Is(err, spotflowhttp.ErrAuthentication), errors.As(err, &e), e.Category)
	// Output: true true escalate
}

// A key of your own, derived from something that survives a restart, makes
// a later repeat of the call safe: Spotflow answers it with the original
// result instead of charging again.
func ExampleContextWithIdempotencyKey() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil)}

	pay := func() *http.Response {
		ctx := spotflowhttp.ContextWithIdempotencyKey(context.Background(), "order-1001")
		req, _ := http.NewRequestWithContext(ctx, "POST", sim.BaseURL()+"/payments",
			strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		return resp
	}
	first, again := pay(), pay() // say, again after a crash
	fmt.Println(first.StatusCode, spotflowhttp.IdempotencyKeyOf(first))
	fmt.Println(again.StatusCode, again.Header.Get("Idempotent-Replayed"), len(sim.Payments()))
	// Output:
	// 201 order-1001
	// 201 true 1
}

// duplicate_reference means the payment exists: with WithResolveDuplicates
// the transport fetches it and returns it as the answer.
func ExampleWithResolveDuplicates() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithResolveDuplicates())}

	create := func() *http.Response {
		req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments",
			strings.NewReader(`{"reference":"inv-77","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		return resp
	}
	create()
	resp := create() // a new key, the same reference: Spotflow says duplicate_reference
	fmt.Println(resp.StatusCode, spotflowhttp.ReplayOf(resp), spotflowhttp.ErrorOf(resp) == nil, sim.Charges("inv-77"))
	// Output: 200 true true 1
}

// Retry tuning: how many attempts, the wait between them, the least wait
// after server_error, the longest Retry-After obeyed and the retry budget.
// The fake clock of spotflowtest makes the waits instant and shows them.
func ExampleWithMaxAttempts() {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		// The first attempt gets 500 server_error, the second a 502, 503
		// or 504 from a proxy; the third goes through.
		Schedule: []spotflowtest.Fault{spotflowtest.FaultServerErrorBeforeCommit, spotflowtest.FaultProxyError},
	}))
	defer sim.Close()
	clock := spotflowtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithClock(clock),
		spotflowhttp.WithMaxAttempts(3),
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(2 * time.Second) }),
		spotflowhttp.WithServerErrorDelay(10*time.Second), // Spotflow asks for 30 s
		spotflowhttp.WithMaxRetryAfter(time.Minute),
		spotflowhttp.WithRetryBudget(20),
	)}

	req, _ := http.NewRequest(http.MethodPost, sim.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, "after waiting", clock.Sleeps(), "payments:", len(sim.Payments()))
	// Output: 201 after waiting [10s 2s] payments: 1
}

// Hooks and a logger see every retry and every escalation. The hooks run on
// the caller's goroutine; the logger never gets headers, query strings or
// bodies.
func ExampleWithOnRetry() {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultServerErrorBeforeCommit},
	}))
	defer sim.Close()

	onRetry := func(_ context.Context, ev spotflowhttp.RetryEvent) {
		fmt.Printf("retry: attempt %d got %d %s, next in %v\n", ev.Attempt, ev.StatusCode, ev.Code, ev.Wait)
	}
	onEscalate := func(_ context.Context, e *spotflowhttp.Error) {
		fmt.Printf("escalate: %d %s after %d attempt(s)\n", e.StatusCode, e.Code, e.Attempts)
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // only to make the output repeatable
			}
			return a
		},
	}))
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithOnRetry(onRetry),
		spotflowhttp.WithOnEscalate(onEscalate),
		spotflowhttp.WithLogger(logger),
		spotflowhttp.WithClock(spotflowtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))),
	)}

	pay := func(secretKey string) {
		ctx := spotflowhttp.ContextWithIdempotencyKey(context.Background(), "order-1")
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, sim.BaseURL()+"/payments",
			strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
		req.Header.Set("Authorization", "Bearer "+secretKey)
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println("status:", resp.StatusCode)
	}
	pay(sim.SecretKey())
	pay("sk_test_revoked")
	// Output:
	// retry: attempt 1 got 500 server_error, next in 30s
	// level=DEBUG msg="spotflow: retry" method=POST path=/api/v1/payments attempt=1 reason=server_error wait=30s status=500 code=server_error key=order-1 error=<nil>
	// status: 201
	// escalate: 401 invalid_credentials after 1 attempt(s)
	// level=WARN msg="spotflow: escalate" method=POST path=/api/v1/payments status=401 code=invalid_credentials key=order-1
	// status: 401
}

// A token bucket paces requests instead of letting Spotflow refuse them:
// here 2 a second, no burst. WithTestKeyRateLimit and WithLiveKeyRateLimit
// set Spotflow's documented limits; WithRateLimitByKey picks them by the
// key each request carries.
func ExampleWithRateLimit() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	clock := spotflowtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithClock(clock),
		spotflowhttp.WithRateLimit(2, 1),
	)}

	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest(http.MethodGet, sim.BaseURL()+"/payments/verify?reference=order-1", nil)
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
	}
	fmt.Println("waited:", clock.Sleeps(), "requests:", sim.Stats().Requests)
	// Output: waited: [500ms 500ms] requests: 3
}

// A Limiter of your own paces requests: here one *rate.Limiter shared by two
// clients, so that together they stay under one budget (1 request a
// second). The redislimit module's Limiter shares a budget between
// processes the same way.
func ExampleWithLimiter() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	clock := spotflowtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	shared := rate.NewLimiter(1, 1)

	verify := func(client *http.Client) {
		req, _ := http.NewRequest(http.MethodGet, sim.BaseURL()+"/payments/verify?reference=order-1", nil)
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
	}
	a := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(clock), spotflowhttp.WithLimiter(shared))}
	b := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(clock), spotflowhttp.WithLimiter(shared))}
	verify(a)
	verify(b) // waits for a's token to come back
	fmt.Println("waited:", clock.Sleeps())
	// Output: waited: [1s]
}

// With WithReference the call's idempotency key also goes into the body's
// reference, by which Spotflow itself refuses a second payment: the
// attempts of one call cannot charge twice even where the key header is
// lost.
func ExampleWithReference() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithReference("reference"))}

	req, _ := http.NewRequest(http.MethodPost, sim.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	key := spotflowhttp.IdempotencyKeyOf(resp)
	fmt.Println(resp.StatusCode, sim.Payments()[0].Reference == key, sim.Charges(key))
	// Output: 201 true 1
}

// Spotflow may answer 200 for a charge that failed; a response check finds
// it in the body, and ErrorOf then reports the response as a failure that
// matches ErrUnsuccessful. The body stays readable.
func ExampleWithResponseCheck() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"reference":"order-9","status":"failed","message":"Card declined"}`)
	}))
	defer srv.Close()

	check := func(resp *http.Response, body []byte) *spotflowhttp.Error {
		var p struct{ Status, Message string }
		if json.Unmarshal(body, &p) == nil && p.Status == "failed" {
			return &spotflowhttp.Error{Category: spotflowhttp.CategoryDontRetry, Code: "payment_failed", Message: p.Message}
		}
		return nil
	}
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithResponseCheck(check))}

	resp, err := client.Get(srv.URL + "/api/v1/payments/verify?reference=order-9")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	e := spotflowhttp.ErrorOf(resp)
	fmt.Println(e)
	fmt.Println(errors.Is(e, spotflowhttp.ErrUnsuccessful))
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(len(body) > 0)
	// Output:
	// spotflow: 200 payment_failed: Card declined (dont_retry, 1 attempt)
	// true
	// true
}

// After a 401 the transport stops sending with that key: a revoked key
// costs one request, not one per call, until Resume.
func ExampleWithHaltOnEscalate() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	transport := spotflowhttp.NewTransport(nil, spotflowhttp.WithHaltOnEscalate())
	client := &http.Client{Transport: transport}

	verify := func(secretKey string) {
		req, _ := http.NewRequest(http.MethodGet, sim.BaseURL()+"/payments/verify?reference=order-1", nil)
		req.Header.Set("Authorization", "Bearer "+secretKey)
		resp, err := client.Do(req)
		var e *spotflowhttp.Error
		if errors.As(err, &e) {
			fmt.Println("answered locally:", e.StatusCode, e.Code, "attempts:", e.Attempts)
			return
		}
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println("answered by Spotflow:", resp.StatusCode)
	}
	verify("sk_test_revoked")
	verify("sk_test_revoked")
	transport.Resume() // say, once the key has been rotated
	verify(sim.SecretKey())
	fmt.Println("requests that reached Spotflow:", sim.Stats().Requests)
	// Output:
	// answered by Spotflow: 401
	// answered locally: 401 invalid_credentials attempts: 0
	// answered by Spotflow: 404
	// requests that reached Spotflow: 2
}
