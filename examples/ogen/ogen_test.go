package ogen_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ogen-go/ogen/validate"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/examples/ogen"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// noWait makes retries immediate, so that no test sleeps.
func noWait() spotflowhttp.Option {
	return spotflowhttp.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} })
}

func payment(ref string) *ogen.PaymentRequest {
	p := &ogen.PaymentRequest{Amount: 5000, Currency: "NGN", Customer: ogen.Customer{Email: "ada@example.com"}}
	if ref != "" {
		p.Reference = ogen.NewOptString(ref)
	}
	return p
}

// keyServer answers 503 (a proxy's HTML) to the first failures requests,
// then 201, and records each request's Idempotency-Key.
type keyServer struct {
	failures int
	mu       sync.Mutex
	keys     []string
}

func (s *keyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.keys = append(s.keys, r.Header.Get(spotflowhttp.IdempotencyKeyHeader))
	n := len(s.keys)
	s.mu.Unlock()
	if n <= s.failures {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "<html>503 Service Unavailable</html>")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"id":"pay_1","reference":"order-1","amount":5000,"currency":"NGN","status":"successful"}`)
}

func (s *keyServer) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

// Two 503s are retried inside the transport with one key; ogen decodes the
// final 201 and never sees the 503s, which it does not declare.
func TestRetriesCarryOneKey(t *testing.T) {
	ks := &keyServer{failures: 2}
	srv := httptest.NewServer(ks)
	defer srv.Close()
	client, err := ogen.NewSpotflowClient(srv.URL, "sk_test_x", noWait())
	if err != nil {
		t.Fatal(err)
	}
	ctx, response := ogen.ContextWithResponse(context.Background())
	res, err := client.CreatePayment(ctx, payment("order-1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.(*ogen.CreatePaymentCreated); !ok {
		t.Fatalf("got %T, want *CreatePaymentCreated", res)
	}
	keys := ks.Keys()
	if len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Fatalf("keys of the attempts: %q; want three equal, non-empty keys", keys)
	}
	if got := spotflowhttp.IdempotencyKeyOf(response()); got != keys[0] {
		t.Fatalf("IdempotencyKeyOf(recorded response) = %q, want %q", got, keys[0])
	}
}

// A key from the caller's context goes on every attempt, so the caller can
// repeat the whole ogen call later with the same effect at most once.
func TestCallersKey(t *testing.T) {
	ks := &keyServer{failures: 1}
	srv := httptest.NewServer(ks)
	defer srv.Close()
	client, err := ogen.NewSpotflowClient(srv.URL, "sk_test_x", noWait())
	if err != nil {
		t.Fatal(err)
	}
	ctx := spotflowhttp.ContextWithIdempotencyKey(context.Background(), "order-1")
	if _, err := client.CreatePayment(ctx, payment("")); err != nil {
		t.Fatal(err)
	}
	if keys := ks.Keys(); len(keys) != 2 || keys[0] != "order-1" || keys[1] != "order-1" {
		t.Fatalf("keys of the attempts: %q, want the caller's on both", keys)
	}
}

// A declared 4xx is a typed value with a nil error; only the recorded
// response gives ErrorOf something to read, after ogen closed its body.
func TestDeclaredStatusThroughTheRecorder(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	client, err := ogen.NewSpotflowClient(sim.BaseURL(), sim.SecretKey(), noWait())
	if err != nil {
		t.Fatal(err)
	}
	bad := payment("order-1")
	bad.Currency = "" // required: 400 missing_parameter

	res, err := client.CreatePayment(context.Background(), bad)
	if err != nil {
		t.Fatalf("a declared 400 came back as an error: %v", err)
	}
	if _, ok := res.(*ogen.CreatePaymentBadRequest); !ok {
		t.Fatalf("got %T, want *CreatePaymentBadRequest", res)
	}

	ctx, response := ogen.ContextWithResponse(context.Background())
	if response() != nil {
		t.Fatal("a response before the call")
	}
	if _, err := client.CreatePayment(ctx, bad); err != nil {
		t.Fatal(err)
	}
	e := spotflowhttp.ErrorOf(response())
	if e == nil || e.StatusCode != 400 || e.Code != "missing_parameter" ||
		e.Category != spotflowhttp.CategoryDontRetry || e.Attempts != 1 || e.IdempotencyKey == "" {
		t.Fatalf("ErrorOf(recorded) = %+v, want 400 missing_parameter, dont_retry, 1 attempt, a key", e)
	}
}

// An undeclared status is a *validate.UnexpectedStatusCodeError whose
// Payload is the stack's final response, annotated and with its body.
func TestUndeclaredStatus(t *testing.T) {
	ks := &keyServer{failures: 100}
	srv := httptest.NewServer(ks)
	defer srv.Close()
	client, err := ogen.NewSpotflowClient(srv.URL, "sk_test_x", noWait(), spotflowhttp.WithMaxAttempts(3))
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.CreatePayment(context.Background(), payment("order-1"))
	var unexpected *validate.UnexpectedStatusCodeError
	if !errors.As(err, &unexpected) {
		t.Fatalf("err = %v, want a *validate.UnexpectedStatusCodeError", err)
	}
	e := spotflowhttp.ErrorOf(unexpected.Payload)
	if e == nil || e.StatusCode != 503 || e.Attempts != 3 || !e.Uncertain || e.IdempotencyKey != ks.Keys()[0] {
		t.Fatalf("ErrorOf(Payload) = %+v, want 503 after 3 attempts, uncertain, with the key", e)
	}
	body, err := io.ReadAll(unexpected.Payload.Body)
	if err != nil || string(body) != "<html>503 Service Unavailable</html>" {
		t.Fatalf("Payload body = %q, %v", body, err)
	}
}

// Concurrent calls with a context each record their own responses.
func TestRecorderPerCall(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	client, err := ogen.NewSpotflowClient(sim.BaseURL(), sim.SecretKey(), noWait())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := fmt.Sprintf("order-%d", i)
			ctx, response := ogen.ContextWithResponse(context.Background())
			if _, err := client.CreatePayment(ctx, payment(ref)); err != nil {
				errs <- err
				return
			}
			resp := response()
			if resp == nil || resp.StatusCode != http.StatusCreated || spotflowhttp.ErrorOf(resp) != nil {
				errs <- fmt.Errorf("%s: recorded %v", ref, resp)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(sim.Payments()); n != 8 {
		t.Fatalf("%d payments, want 8", n)
	}
}

// A server that never answers: the call ends at the deadline with an error
// that matches context.DeadlineExceeded and carries the *spotflowhttp.Error
// with the key, for resolving the outcome later.
func TestDeadline(t *testing.T) {
	// The simulator's latency ends when the client hangs up.
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Minute}))
	defer srv.Close()
	client, err := ogen.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(), noWait())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = client.CreatePayment(ctx, payment("order-1"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || e.IdempotencyKey == "" || !e.Uncertain {
		t.Fatalf("err = %v, want a *spotflowhttp.Error with a key, uncertain", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v after a 200 ms deadline", d)
	}
}
