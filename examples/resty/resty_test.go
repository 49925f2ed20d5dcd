package resty_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/spotflow-go/spotflowhttp"
	spotflowresty "github.com/spotflow-go/spotflowhttp/examples/resty"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// afterCommit500 makes the simulator create each payment and then answer
// 500 server_error to the first request with a given idempotency key; a
// repeat with the same key gets the payment, replayed.
func afterCommit500(t *testing.T) *spotflowtest.Server {
	t.Helper()
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultServerErrorAfterCommit},
	}))
	t.Cleanup(sim.Close)
	return sim
}

// retryingResty is resty set up the way many codebases have it: its own
// retries on 5xx, and a per-try timeout (SetTimeout, which is
// http.Client.Timeout) shorter than the 30 s Spotflow asks before a
// server_error is retried, so the stack returns the 500 and resty tries
// again.
func retryingResty(sim *spotflowtest.Server) *resty.Client {
	return resty.New().
		SetTransport(spotflowhttp.NewTransport(nil)).
		SetBaseURL(sim.BaseURL()).
		SetAuthToken(sim.SecretKey()).
		SetTimeout(5 * time.Second).
		SetRetryCount(2).
		SetRetryWaitTime(time.Millisecond).
		AddRetryCondition(func(r *resty.Response, err error) bool { return r != nil && r.StatusCode() >= 500 })
}

// order is one order's payment. It carries the order id in its metadata,
// not as the reference, as an integration that lets Spotflow assign
// references does; so nothing but the idempotency key can tell a repeat.
func order(id string) map[string]any {
	return map[string]any{
		"amount":   5000,
		"currency": "NGN",
		"customer": map[string]string{"email": "ada@example.com"},
		"metadata": map[string]string{"order_id": id},
	}
}

// resty's retries above the stack: every resty try is a new call with a new
// key, so each creates a payment. Three tries, three payments for one
// order, and the caller is left with a 500, as if none had been made.
func TestRestyRetriesDuplicate(t *testing.T) {
	sim := afterCommit500(t)
	resp, err := retryingResty(sim).R().SetBody(order("1001")).Post("/payments")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusInternalServerError {
		t.Fatalf("status %d, want the third try's 500", resp.StatusCode())
	}
	if n := sim.CountMetadata("order_id", "1001"); n != 3 {
		t.Fatalf("%d payments for order 1001; resty's 3 tries each made one before", n)
	}
}

// The same resty retries with the key in the request's context: every try
// carries it, and Spotflow answers the second with the payment the first
// made.
func TestRestyRetriesWithTheCallersKey(t *testing.T) {
	sim := afterCommit500(t)
	ctx := spotflowhttp.ContextWithIdempotencyKey(context.Background(), "order-1001")
	resp, err := retryingResty(sim).R().SetContext(ctx).SetBody(order("1001")).Post("/payments")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusCreated || resp.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("status %d, replayed %q; want the first payment, replayed", resp.StatusCode(), resp.Header().Get("Idempotent-Replayed"))
	}
	if n := sim.CountMetadata("order_id", "1001"); n != 1 {
		t.Fatalf("%d payments for order 1001, want 1", n)
	}
	if n := sim.Arrivals("order-1001"); n != 2 {
		t.Fatalf("the key arrived %d times, want 2 (resty's two tries)", n)
	}
}

// resty's retries off, as NewSpotflowClient leaves them: the stack waits
// the 30 s (on a fake clock here) and retries with the same key. The
// deadline is a context's, with room for that wait.
func TestStackRetriesAlone(t *testing.T) {
	sim := afterCommit500(t)
	clock := spotflowtest.NewClock(time.Now())
	client := spotflowresty.NewSpotflowClient(sim.BaseURL(), sim.SecretKey(), spotflowhttp.WithClock(clock))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := client.R().SetContext(ctx).SetBody(order("1001")).Post("/payments")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusCreated || spotflowhttp.ErrorOf(resp.RawResponse) != nil {
		t.Fatalf("status %d, ErrorOf %v", resp.StatusCode(), spotflowhttp.ErrorOf(resp.RawResponse))
	}
	if n := sim.CountMetadata("order_id", "1001"); n != 1 {
		t.Fatalf("%d payments for order 1001, want 1", n)
	}
	if s := clock.Sleeps(); len(s) != 1 || s[0] < 30*time.Second {
		t.Fatalf("waits %v, want one of at least 30 s before retrying server_error", s)
	}
}

// A final failure reaches resty as a response like any other; ErrorOf on
// resp.RawResponse says what it means after resty has read the body.
func TestErrorOfRawResponse(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	client := spotflowresty.NewSpotflowClient(sim.BaseURL(), "sk_test_revoked")
	resp, err := client.R().SetBody(order("1001")).Post("/payments")
	if err != nil {
		t.Fatal(err)
	}
	e := spotflowhttp.ErrorOf(resp.RawResponse)
	if resp.StatusCode() != http.StatusUnauthorized || e == nil || e.Code != "invalid_credentials" ||
		e.Category != spotflowhttp.CategoryEscalate || e.Attempts != 1 || len(resp.Body()) == 0 {
		t.Fatalf("status %d, body %q, ErrorOf %+v", resp.StatusCode(), resp.Body(), e)
	}
}

// A server that never answers: the call ends at the context's deadline
// with an error that keeps the *spotflowhttp.Error and its key (SetTimeout
// would have replaced it).
func TestDeadline(t *testing.T) {
	// The simulator's latency ends when the client hangs up.
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Minute}))
	defer srv.Close()
	client := spotflowresty.NewSpotflowClient(srv.BaseURL(), srv.SecretKey())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := client.R().SetContext(ctx).SetBody(order("1001")).Post("/payments")
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
