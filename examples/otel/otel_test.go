package otel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// noWait makes retries immediate, so that no test sleeps.
func noWait() spotflowhttp.Option {
	return spotflowhttp.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} })
}

// placement builds a transport with otelhttp at one place in the stack.
type placement struct {
	name  string
	build func(tp *sdktrace.TracerProvider, opts ...spotflowhttp.Option) http.RoundTripper
}

var (
	outside = placement{"outside", func(tp *sdktrace.TracerProvider, opts ...spotflowhttp.Option) http.RoundTripper {
		return otelhttp.NewTransport(spotflowhttp.NewTransport(nil, opts...),
			otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{}))
	}}
	inside = placement{"inside", func(tp *sdktrace.TracerProvider, opts ...spotflowhttp.Option) http.RoundTripper {
		return spotflowhttp.NewTransport(otelhttp.NewTransport(nil,
			otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{})), opts...)
	}}
)

// flaky answers 503 to the first failures requests, then 201, and records
// the headers of each attempt.
type flaky struct {
	failures int

	mu          sync.Mutex
	keys        []string
	traceparent []string
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get(spotflowhttp.IdempotencyKeyHeader))
	f.traceparent = append(f.traceparent, r.Header.Get("Traceparent"))
	n := len(f.keys)
	f.mu.Unlock()
	if n <= f.failures {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "<html><body><h1>503 Service Unavailable</h1></body></html>")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"id":"pay_1","reference":"ord-1","amount":5000,"currency":"NGN","status":"successful"}`)
}

func (f *flaky) headers() (keys, traceparents []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...), append([]string(nil), f.traceparent...)
}

func post(ctx context.Context, t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/payments",
		strings.NewReader(`{"reference":"ord-1","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// A call that needs 3 attempts (503, 503, 201) records one span outside the
// stack and three inside it, all under the caller's span.
func TestSpansPerPlacement(t *testing.T) {
	for _, tc := range []struct {
		placement
		wantStatuses []int64
	}{
		{outside, []int64{201}},
		{inside, []int64{503, 503, 201}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&flaky{failures: 2})
			defer srv.Close()
			sr := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
			client := &http.Client{Transport: tc.build(tp, noWait())}

			ctx, parent := tp.Tracer("checkout").Start(context.Background(), "charge")
			resp, err := client.Do(post(ctx, t, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close() // ends the span of the final attempt
			parent.End()

			if resp.StatusCode != http.StatusCreated || spotflowhttp.ErrorOf(resp) != nil {
				t.Fatalf("status %d, ErrorOf %v", resp.StatusCode, spotflowhttp.ErrorOf(resp))
			}
			spans := httpSpans(sr)
			if len(spans) != len(tc.wantStatuses) {
				t.Fatalf("%d HTTP spans, want %d", len(spans), len(tc.wantStatuses))
			}
			for i, s := range spans {
				if got := statusOf(s); got != tc.wantStatuses[i] {
					t.Errorf("span %d: status %d, want %d", i, got, tc.wantStatuses[i])
				}
				wantCode := codes.Unset
				if tc.wantStatuses[i] >= 500 {
					wantCode = codes.Error
				}
				if s.Status().Code != wantCode {
					t.Errorf("span %d: span status %v, want %v", i, s.Status().Code, wantCode)
				}
				if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
					t.Errorf("span %d is not a child of the caller's span", i)
				}
			}
			checkSpansInTurn(t, spans)
			if n := len(sr.Started()) - len(sr.Ended()); n != 0 {
				t.Errorf("%d spans never ended", n)
			}

			keys, tps := srv.Config.Handler.(*flaky).headers()
			checkAttemptHeaders(t, tc.name == "inside", spans, spotflowhttp.IdempotencyKeyOf(resp), keys, tps)
		})
	}
}

// httpSpans is the spans sr recorded ended, but the caller's own ("charge").
func httpSpans(sr *tracetest.SpanRecorder) []sdktrace.ReadOnlySpan {
	var spans []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() != "charge" {
			spans = append(spans, s)
		}
	}
	return spans
}

// checkSpansInTurn checks that each of spans ends before the next starts:
// an attempt's span ends when its response has been classified, before
// the wait and the next attempt, so its duration is the attempt's own.
func checkSpansInTurn(t *testing.T, spans []sdktrace.ReadOnlySpan) {
	for i := 1; i < len(spans); i++ {
		if spans[i-1].EndTime().After(spans[i].StartTime()) {
			t.Errorf("span %d ends after span %d starts", i-1, i)
		}
	}
}

// checkAttemptHeaders checks the key and the traceparent each attempt sent
// (keys, tps). Outside, every attempt sends the call's traceparent (that
// of spans[0]); inside, each attempt sends its own span's. The key is the
// call's, the same for all.
func checkAttemptHeaders(t *testing.T, inside bool, spans []sdktrace.ReadOnlySpan, key string, keys, tps []string) {
	for i := range keys {
		if keys[i] != key || key == "" {
			t.Errorf("attempt %d sent key %q, want %q", i+1, keys[i], key)
		}
		want := spans[0].SpanContext().SpanID().String()
		if inside {
			want = spans[i].SpanContext().SpanID().String()
		}
		if !strings.Contains(tps[i], want) {
			t.Errorf("attempt %d sent traceparent %q, want span %s", i+1, tps[i], want)
		}
	}
}

// With otelhttp outside the stack the response the caller gets has a body
// wrapped by otelhttp. ErrorOf still describes it, also after the body has
// been read and closed.
func TestErrorOfThroughWrappedBody(t *testing.T) {
	srv := httptest.NewServer(&flaky{failures: 100})
	defer srv.Close()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	client := &http.Client{Transport: outside.build(tp, noWait(), spotflowhttp.WithMaxAttempts(3))}

	resp, err := client.Do(post(context.Background(), t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if b := fmt.Sprintf("%#v", resp.Body); !strings.Contains(b, "otelhttp.") {
		t.Fatalf("body is %s, want otelhttp's wrapper", b)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(string(body), "503 Service Unavailable") {
		t.Errorf("body = %q", body)
	}

	e := spotflowhttp.ErrorOf(resp)
	if e == nil {
		t.Fatal("ErrorOf = nil for a final 503")
	}
	key := spotflowhttp.IdempotencyKeyOf(resp)
	if e.StatusCode != 503 || e.Attempts != 3 || !e.Uncertain || e.Category != spotflowhttp.CategoryRetry ||
		!errors.Is(e, spotflowhttp.ErrAPI) || key == "" || e.IdempotencyKey != key {
		t.Errorf("ErrorOf = %+v, IdempotencyKeyOf = %q", e, key)
	}
	if spans := sr.Ended(); len(spans) != 1 || statusOf(spans[0]) != 503 || spans[0].Status().Code != codes.Error {
		t.Errorf("spans = %d, want one ended with 503 and status Error", len(spans))
	}
}

// A deadline ends the call in both placements with an error matching
// context.DeadlineExceeded, and the span records it.
func TestDeadline(t *testing.T) {
	const deadline = 200 * time.Millisecond
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{Latency: time.Minute}))
	defer srv.Close()

	for _, p := range []placement{outside, inside} {
		t.Run(p.name, func(t *testing.T) {
			sr := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
			client := &http.Client{Transport: p.build(tp, noWait())}

			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.BaseURL()+"/payments/verify?reference=ord-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
			start := time.Now()
			resp, err := client.Do(req)
			if elapsed := time.Since(start); elapsed > deadline+time.Second {
				t.Errorf("call took %v, deadline %v", elapsed, deadline)
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("status %d, want an error", resp.StatusCode)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want one matching context.DeadlineExceeded", err)
			}
			spans := sr.Ended()
			if len(spans) != 1 || spans[0].Status().Code != codes.Error {
				t.Fatalf("%d spans, want 1 with status Error", len(spans))
			}
		})
	}
}
