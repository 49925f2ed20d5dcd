package spotflowhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

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
// usual and ErrorOf tells what it means.
func ExampleNewTransport() {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"status":"successful"}`)
	}))
	defer srv.Close()

	client := &http.Client{}
	client.Transport = spotflowhttp.NewTransport(client.Transport,
		spotflowhttp.WithBackoff(constantBackoff(time.Millisecond)))

	resp, err := client.Get(srv.URL + "/api/v1/payments/verify?reference=ord-1")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode, spotflowhttp.ErrorOf(resp) == nil, calls)
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
		spotflowhttp.WithBackoff(constantBackoff(time.Millisecond)))}
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
