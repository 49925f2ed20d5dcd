package httpmock_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

const paymentsURL = "https://api.spotflow.co/api/v1/payments"

// newPayment returns a create request; body "" means one without a
// reference.
func newPayment(ctx context.Context, t *testing.T, body string) *http.Request {
	t.Helper()
	if body == "" {
		body = `{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, paymentsURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk_test_x")
	return req
}

// keyRecorder wraps a responder and records the Idempotency-Key of every
// request that reaches it.
type keyRecorder struct {
	mu   sync.Mutex
	keys []string
}

func (k *keyRecorder) wrap(r httpmock.Responder) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		k.mu.Lock()
		k.keys = append(k.keys, req.Header.Get(spotflowhttp.IdempotencyKeyHeader))
		k.mu.Unlock()
		return r(req)
	}
}

func (k *keyRecorder) Keys() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.keys...)
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// A 429 with Retry-After is retried after exactly the wait the server asked
// for, on the fake clock, so the test does not sleep.
func TestRateLimitThenSuccess(t *testing.T) {
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder(http.MethodPost, paymentsURL,
		spotflowtest.RateLimitExceeded(2*time.Second).Then(spotflowtest.PaymentCreated("ord-429", 5000)))
	clock := newFakeClock()
	client := &http.Client{Transport: spotflowhttp.NewTransport(mock, spotflowhttp.WithClock(clock))}

	start := time.Now()
	resp, err := client.Do(newPayment(context.Background(), t, `{"reference":"ord-429","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer drain(resp)

	if resp.StatusCode != http.StatusCreated || spotflowhttp.ErrorOf(resp) != nil {
		t.Fatalf("status %d, ErrorOf %v; want 201, nil", resp.StatusCode, spotflowhttp.ErrorOf(resp))
	}
	if n := mock.GetTotalCallCount(); n != 2 {
		t.Errorf("%d requests reached the mock, want 2", n)
	}
	if got := clock.Sleeps(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
		t.Errorf("waits = %v, want [2s] as Retry-After asked", got)
	}
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("took %v of real time; the fake clock should make it instant", elapsed)
	}
}

// invalid_credentials is an escalation: not retried, reported once to
// WithOnEscalate, and with WithHaltOnEscalate later calls are refused
// locally until Resume, so a revoked key costs one request, not one per call.
func TestInvalidCredentialsEscalates(t *testing.T) {
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder(http.MethodPost, paymentsURL, spotflowtest.InvalidCredentials())
	var escalated []*spotflowhttp.Error
	tr := spotflowhttp.NewTransport(mock,
		spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithOnEscalate(func(_ context.Context, e *spotflowhttp.Error) { escalated = append(escalated, e) }),
		spotflowhttp.WithHaltOnEscalate())
	client := &http.Client{Transport: tr}
	ctx := context.Background()

	resp, err := client.Do(newPayment(ctx, t, ""))
	if err != nil {
		t.Fatal(err)
	}
	drain(resp)
	e := spotflowhttp.ErrorOf(resp)
	if resp.StatusCode != http.StatusUnauthorized || e == nil {
		t.Fatalf("status %d, ErrorOf %v", resp.StatusCode, e)
	}
	if e.Code != "invalid_credentials" || e.Category != spotflowhttp.CategoryEscalate || e.Attempts != 1 ||
		!errors.Is(e, spotflowhttp.ErrAuthentication) {
		t.Errorf("ErrorOf = %+v", e)
	}
	if len(escalated) != 1 || escalated[0].Code != "invalid_credentials" {
		t.Errorf("OnEscalate got %v, want one invalid_credentials", escalated)
	}

	// Halted: refused without a request.
	_, err = client.Do(newPayment(ctx, t, ""))
	var halted *spotflowhttp.Error
	if !errors.As(err, &halted) || halted.Attempts != 0 || !errors.Is(err, spotflowhttp.ErrAuthentication) {
		t.Errorf("second call: err = %v, want the halt *Error with 0 attempts", err)
	}
	if n := mock.GetTotalCallCount(); n != 1 {
		t.Errorf("%d requests reached the mock, want 1", n)
	}

	// After the key is rotated, Resume lets requests through again.
	tr.Resume()
	mock.RegisterResponder(http.MethodPost, paymentsURL, spotflowtest.PaymentCreated("", 5000))
	resp, err = client.Do(newPayment(ctx, t, ""))
	if err != nil {
		t.Fatal(err)
	}
	drain(resp)
	if resp.StatusCode != http.StatusCreated || mock.GetTotalCallCount() != 2 {
		t.Errorf("after Resume: status %d, %d requests; want 201, 2", resp.StatusCode, mock.GetTotalCallCount())
	}
}

// A connection reset after the request was sent leaves the outcome unknown.
// A POST is sent again only if a repeat cannot charge twice: it carries an
// idempotency key, or a reference Spotflow deduplicates by.
func TestConnectionReset(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport func(base http.RoundTripper, clock spotflowhttp.Clock) http.RoundTripper
		key       string // Idempotency-Key set by the caller
		body      string // "" for a body without reference
		wantTries int
	}{
		{
			name: "retry layer alone, no key: not retried",
			transport: func(base http.RoundTripper, c spotflowhttp.Clock) http.RoundTripper {
				return spotflowhttp.NewRetryTransport(base, spotflowhttp.WithClock(c))
			},
			wantTries: 1,
		},
		{
			name: "full stack without automatic keys: not retried",
			transport: func(base http.RoundTripper, c spotflowhttp.Clock) http.RoundTripper {
				return spotflowhttp.NewTransport(base, spotflowhttp.WithClock(c), spotflowhttp.WithKeyMethods())
			},
			wantTries: 1,
		},
		{
			name: "retry layer alone, key set by the caller: retried",
			transport: func(base http.RoundTripper, c spotflowhttp.Clock) http.RoundTripper {
				return spotflowhttp.NewRetryTransport(base, spotflowhttp.WithClock(c))
			},
			key:       "order-1042",
			wantTries: 2,
		},
		{
			name: "retry layer alone, reference in the body: retried",
			transport: func(base http.RoundTripper, c spotflowhttp.Clock) http.RoundTripper {
				return spotflowhttp.NewRetryTransport(base, spotflowhttp.WithClock(c))
			},
			body:      `{"reference":"order-1042","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`,
			wantTries: 2,
		},
		{
			name: "full stack, key added by the transport: retried",
			transport: func(base http.RoundTripper, c spotflowhttp.Clock) http.RoundTripper {
				return spotflowhttp.NewTransport(base, spotflowhttp.WithClock(c))
			},
			wantTries: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mock := httpmock.NewMockTransport()
			var rec keyRecorder
			mock.RegisterResponder(http.MethodPost, paymentsURL,
				rec.wrap(spotflowtest.ConnectionReset().Then(spotflowtest.PaymentCreated("", 5000))))
			client := &http.Client{Transport: tc.transport(mock, newFakeClock())}

			req := newPayment(context.Background(), t, tc.body)
			if tc.key != "" {
				req.Header.Set(spotflowhttp.IdempotencyKeyHeader, tc.key)
			}
			resp, err := client.Do(req)
			if n := mock.GetTotalCallCount(); n != tc.wantTries {
				t.Errorf("%d requests reached the mock, want %d", n, tc.wantTries)
			}

			if tc.wantTries == 1 {
				if err == nil {
					drain(resp)
					t.Fatalf("status %d, want the connection error", resp.StatusCode)
				}
				var e *spotflowhttp.Error
				if !errors.As(err, &e) || !e.Uncertain || e.Attempts != 1 ||
					!errors.Is(err, spotflowhttp.ErrAPIConnection) || !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("err = %v (%+v); want an uncertain *Error after 1 attempt wrapping ECONNRESET", err, e)
				}
				return
			}

			if err != nil {
				t.Fatal(err)
			}
			drain(resp)
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("status %d, want 201", resp.StatusCode)
			}
			keys := rec.Keys()
			if keys[0] != keys[1] || (tc.body == "" && keys[0] == "") {
				t.Errorf("keys sent = %q, want the same key twice", keys)
			}
		})
	}
}

// A deadline ends the call by the deadline: with the last response when the
// next wait would not fit before it, or with an error matching
// context.DeadlineExceeded when no answer comes.
func TestDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond

	t.Run("Retry-After past the deadline", func(t *testing.T) {
		mock := httpmock.NewMockTransport()
		mock.RegisterResponder(http.MethodPost, paymentsURL, spotflowtest.RateLimitExceeded(30*time.Second))
		clock := newFakeClock()
		client := &http.Client{Transport: spotflowhttp.NewTransport(mock, spotflowhttp.WithClock(clock))}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()

		resp, err := client.Do(newPayment(ctx, t, ""))
		if err != nil {
			t.Fatal(err)
		}
		drain(resp)
		e := spotflowhttp.ErrorOf(resp)
		if resp.StatusCode != http.StatusTooManyRequests || e == nil || e.RetryAfter != 30*time.Second ||
			e.Attempts != 1 || !errors.Is(e, spotflowhttp.ErrRateLimit) {
			t.Errorf("status %d, ErrorOf %+v; want the 429 back at once", resp.StatusCode, e)
		}
		if s := clock.Sleeps(); len(s) != 0 {
			t.Errorf("waited %v; a wait that cannot end before the deadline must not start", s)
		}
	})

	t.Run("no answer", func(t *testing.T) {
		mock := httpmock.NewMockTransport()
		mock.RegisterResponder(http.MethodPost, paymentsURL, spotflowtest.PaymentCreated("", 5000).Delay(time.Minute))
		client := &http.Client{Transport: spotflowhttp.NewTransport(mock, spotflowhttp.WithClock(newFakeClock()))}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()

		start := time.Now()
		resp, err := client.Do(newPayment(ctx, t, ""))
		if elapsed := time.Since(start); elapsed > deadline+time.Second {
			t.Errorf("call took %v, deadline %v", elapsed, deadline)
		}
		if err == nil {
			drain(resp)
			t.Fatalf("status %d, want an error", resp.StatusCode)
		}
		var e *spotflowhttp.Error
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &e) || e.Attempts != 1 || e.IdempotencyKey == "" {
			t.Errorf("err = %v; want a *spotflowhttp.Error matching context.DeadlineExceeded, with the key to resolve it", err)
		}
	})
}
