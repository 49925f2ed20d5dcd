package openapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/examples/openapi"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// noWait makes retries immediate, so that no test sleeps.
func noWait() spotflowhttp.Option {
	return spotflowhttp.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} })
}

func payment(ref string) openapi.PaymentRequest {
	p := openapi.PaymentRequest{
		Amount:   5000,
		Currency: "NGN",
		Customer: openapi.Customer{Email: "ada@example.com"},
	}
	if ref != "" {
		p.Reference = &ref
	}
	return p
}

// A 503 from the proxy in front of Spotflow is retried inside the
// transport; the generated client sees only the final 201 and decodes it.
// Every attempt carries the same Idempotency-Key.
func TestRetried503ThenSuccess(t *testing.T) {
	var (
		mu   sync.Mutex
		keys []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req openapi.PaymentRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Header.Get("Authorization") != "Bearer sk_test_x" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		mu.Lock()
		keys = append(keys, r.Header.Get(spotflowhttp.IdempotencyKeyHeader))
		n := len(keys)
		mu.Unlock()
		if n < 3 {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1></body></html>")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(openapi.Payment{
			Id: "pay_1", Reference: *req.Reference, Amount: req.Amount, Currency: req.Currency, Status: "successful",
		})
	}))
	defer srv.Close()

	var retries []spotflowhttp.RetryEvent
	client, err := openapi.NewSpotflowClient(srv.URL, "sk_test_x", noWait(),
		spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) { retries = append(retries, ev) }))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.CreatePaymentWithResponse(context.Background(), payment("ord-503"))
	if err != nil {
		t.Fatal(err)
	}

	if resp.StatusCode() != http.StatusCreated || resp.JSON201 == nil {
		t.Fatalf("status %d, JSON201 %v; want 201 decoded", resp.StatusCode(), resp.JSON201)
	}
	if got := resp.JSON201.Reference; got != "ord-503" {
		t.Errorf("JSON201.Reference = %q", got)
	}
	if e := spotflowhttp.ErrorOf(resp.HTTPResponse); e != nil {
		t.Errorf("ErrorOf = %v, want nil", e)
	}
	if len(retries) != 2 || retries[0].StatusCode != 503 || retries[1].StatusCode != 503 {
		t.Errorf("retries = %+v, want two after 503", retries)
	}

	key := spotflowhttp.IdempotencyKeyOf(resp.HTTPResponse)
	mu.Lock()
	defer mu.Unlock()
	if key == "" || !slices.Equal(keys, []string{key, key, key}) {
		t.Errorf("keys sent = %q, IdempotencyKeyOf = %q; want the same key on all 3 attempts", keys, key)
	}
	if retries[0].IdempotencyKey != key {
		t.Errorf("RetryEvent.IdempotencyKey = %q, want %q", retries[0].IdempotencyKey, key)
	}
}

// Against the simulator: the first attempt creates the payment and then the
// connection is reset, so the client cannot know whether it went through.
// The retry carries the same key, so Spotflow replays the success instead
// of charging again.
func TestResetAfterCommitChargedOnce(t *testing.T) {
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultProxyError, spotflowtest.FaultResetAfterCommit},
	}))
	defer srv.Close()

	client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(), noWait())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.CreatePaymentWithResponse(context.Background(), payment("ord-reset"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusCreated || resp.JSON201 == nil || resp.JSON201.Status != "successful" {
		t.Fatalf("status %d, body %s; want 201 successful", resp.StatusCode(), resp.Body)
	}

	key := spotflowhttp.IdempotencyKeyOf(resp.HTTPResponse)
	if n := srv.Arrivals(key); n != 3 {
		t.Errorf("server saw key %q %d times, want 3 (proxy error, reset after commit, replay)", key, n)
	}
	if n := srv.Charges("ord-reset"); n != 1 {
		t.Errorf("charged %d times, want 1", n)
	}
	st := srv.Stats()
	if st.Created != 1 || st.Replayed != 1 || st.Resets != 1 || st.ProxyErrors != 1 {
		t.Errorf("stats = %+v", st)
	}
	if p := srv.Payments(); len(p) != 1 || p[0].IdempotencyKey != key || p[0].ID != resp.JSON201.Id {
		t.Errorf("payments = %+v, want one with key %q and id %q", p, key, resp.JSON201.Id)
	}
}

// WithReference writes the call's idempotency key into the body's
// reference when the caller left it out (the generated struct omits a nil
// Reference), so Spotflow itself deduplicates the attempts.
func TestReferenceFromKey(t *testing.T) {
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer srv.Close()
	client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(), noWait(), spotflowhttp.WithReference("reference"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.CreatePaymentWithResponse(context.Background(), payment(""))
	if err != nil {
		t.Fatal(err)
	}
	if resp.JSON201 == nil {
		t.Fatalf("status %d, body %s", resp.StatusCode(), resp.Body)
	}
	key := spotflowhttp.IdempotencyKeyOf(resp.HTTPResponse)
	if key == "" || resp.JSON201.Reference != key {
		t.Errorf("reference = %q, key = %q; want the key as reference", resp.JSON201.Reference, key)
	}
	if n := srv.Charges(key); n != 1 || len(srv.Payments()) != 1 {
		t.Errorf("charged %d times, %d payments; want 1", n, len(srv.Payments()))
	}
}

// A final 4xx comes back as a response, not an error: the generated client
// decodes its body into JSON400 or JSON401, and ErrorOf reads the same body
// (it was not consumed) to classify it.
func TestFinal4xx(t *testing.T) {
	srv := spotflowtest.NewServer()
	defer srv.Close()
	ctx := context.Background()

	t.Run("missing_parameter", func(t *testing.T) { final400MissingParameter(t, ctx, srv) })
	t.Run("invalid_credentials", func(t *testing.T) { final401InvalidCredentials(t, ctx, srv) })
	t.Run("not_found", func(t *testing.T) { final404NotFound(t, ctx, srv) })
}

// A 400 is decoded into JSON400, and ErrorOf reads the same body: an
// invalid request, not to retry.
func final400MissingParameter(t *testing.T, ctx context.Context, srv *spotflowtest.Server) {
	client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(), noWait())
	if err != nil {
		t.Fatal(err)
	}
	req := payment("ord-400")
	req.Customer.Email = ""
	resp, err := client.CreatePaymentWithResponse(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusBadRequest || resp.JSON400 == nil {
		t.Fatalf("status %d, JSON400 %v", resp.StatusCode(), resp.JSON400)
	}
	if got, want := string(resp.Body), `{"error":"Bad Request","message":"missing_parameter","status":400}`; got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	if m, e, s := deref(resp.JSON400.Message), deref(resp.JSON400.Error), deref(resp.JSON400.Status); m != "missing_parameter" || e != "Bad Request" || s != 400 {
		t.Errorf("JSON400 = {message %q, error %q, status %d}", m, e, s)
	}

	e := spotflowhttp.ErrorOf(resp.HTTPResponse)
	if e == nil {
		t.Fatal("ErrorOf = nil")
	}
	if e.Code != "missing_parameter" || e.Category != spotflowhttp.CategoryDontRetry || e.Attempts != 1 ||
		!errors.Is(e, spotflowhttp.ErrInvalidRequest) || e.IdempotencyKey == "" {
		t.Errorf("ErrorOf = %+v", e)
	}
}

// A 401 is decoded into JSON401, and ErrorOf classifies it to escalate,
// which OnEscalate hears once.
func final401InvalidCredentials(t *testing.T, ctx context.Context, srv *spotflowtest.Server) {
	var escalated []*spotflowhttp.Error
	client, err := openapi.NewSpotflowClient(srv.BaseURL(), "sk_test_revoked", noWait(),
		spotflowhttp.WithOnEscalate(func(_ context.Context, e *spotflowhttp.Error) { escalated = append(escalated, e) }))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.CreatePaymentWithResponse(ctx, payment("ord-401"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusUnauthorized || resp.JSON401 == nil || deref(resp.JSON401.Code) != "invalid_credentials" {
		t.Fatalf("status %d, body %s", resp.StatusCode(), resp.Body)
	}
	e := spotflowhttp.ErrorOf(resp.HTTPResponse)
	if e == nil || e.Category != spotflowhttp.CategoryEscalate || !errors.Is(e, spotflowhttp.ErrAuthentication) || e.Attempts != 1 {
		t.Errorf("ErrorOf = %+v", e)
	}
	if len(escalated) != 1 {
		t.Errorf("OnEscalate called %d times, want 1", len(escalated))
	}
}

// A 404 is decoded into JSON404, and ErrorOf reads it as not found.
func final404NotFound(t *testing.T, ctx context.Context, srv *spotflowtest.Server) {
	client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(), noWait())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.VerifyPaymentWithResponse(ctx, &openapi.VerifyPaymentParams{Reference: "no-such-ref"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != http.StatusNotFound || resp.JSON404 == nil || deref(resp.JSON404.Code) != "not_found" {
		t.Fatalf("status %d, body %s", resp.StatusCode(), resp.Body)
	}
	e := spotflowhttp.ErrorOf(resp.HTTPResponse)
	if e == nil || !errors.Is(e, spotflowhttp.ErrNotFound) || e.Category != spotflowhttp.CategoryDontRetry {
		t.Errorf("ErrorOf = %+v", e)
	}
}

// With WithResolveDuplicates a second create with a used reference gets the
// existing payment (fetched through verify, status 200) instead of the 400
// duplicate_reference. The spec declares that 200 so the generated client
// decodes it.
func TestDuplicateResolved(t *testing.T) {
	srv := spotflowtest.NewServer()
	defer srv.Close()
	ctx := context.Background()
	client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(), noWait(), spotflowhttp.WithResolveDuplicates())
	if err != nil {
		t.Fatal(err)
	}

	first, err := client.CreatePaymentWithResponse(ctx, payment("ord-dup"))
	if err != nil || first.JSON201 == nil {
		t.Fatalf("first create: %v, status %d", err, first.StatusCode())
	}
	again, err := client.CreatePaymentWithResponse(ctx, payment("ord-dup"))
	if err != nil {
		t.Fatal(err)
	}
	if again.StatusCode() != http.StatusOK || again.JSON200 == nil || again.JSON200.Id != first.JSON201.Id {
		t.Fatalf("second create: status %d, body %s; want 200 with payment %s", again.StatusCode(), again.Body, first.JSON201.Id)
	}
	if !spotflowhttp.ReplayOf(again.HTTPResponse) || spotflowhttp.ErrorOf(again.HTTPResponse) != nil {
		t.Errorf("ReplayOf = %v, ErrorOf = %v; want true, nil",
			spotflowhttp.ReplayOf(again.HTTPResponse), spotflowhttp.ErrorOf(again.HTTPResponse))
	}
	if n := srv.Charges("ord-dup"); n != 1 {
		t.Errorf("charged %d times, want 1", n)
	}
}

// A deadline bounds the whole call, retries and waits included: it ends by
// the deadline, with the last response or with an error that matches
// context.DeadlineExceeded.
func TestDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	// Slack for a loaded machine; the point is that the call does not run
	// on for its remaining attempts and waits.
	const slack = time.Second

	t.Run("outage", func(t *testing.T) {
		srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
			Outages: []spotflowtest.Window{{Start: 0, Duration: time.Hour}},
		}))
		defer srv.Close()
		client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(),
			spotflowhttp.WithMaxAttempts(1000),
			spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(40 * time.Millisecond) }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		resp, err := client.CreatePaymentWithResponse(ctx, payment("ord-outage"))
		elapsed := time.Since(start)
		if elapsed > deadline+slack {
			t.Errorf("call took %v, deadline %v", elapsed, deadline)
		}
		switch {
		case err != nil:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want one matching context.DeadlineExceeded", err)
			}
		default:
			e := spotflowhttp.ErrorOf(resp.HTTPResponse)
			if resp.StatusCode() != http.StatusServiceUnavailable || e == nil || e.Attempts < 2 || !e.Uncertain {
				t.Errorf("status %d, ErrorOf %+v; want the last 503 after several attempts", resp.StatusCode(), e)
			}
			t.Logf("ended after %v with %v", elapsed, e)
		}
	})

	t.Run("slow server", func(t *testing.T) {
		srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Minute}))
		defer srv.Close()
		client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(), noWait())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		resp, err := client.VerifyPaymentWithResponse(ctx, &openapi.VerifyPaymentParams{Reference: "ord-slow"})
		if elapsed := time.Since(start); elapsed > deadline+slack {
			t.Errorf("call took %v, deadline %v", elapsed, deadline)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("resp %v, err %v; want an error matching context.DeadlineExceeded", resp, err)
		}
		var e *spotflowhttp.Error
		if !errors.As(err, &e) || e.Attempts != 1 {
			t.Errorf("err = %v, want a *spotflowhttp.Error after 1 attempt", err)
		}
	})
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
