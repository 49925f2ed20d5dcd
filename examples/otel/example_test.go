package otel_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spotflow-go/spotflowhttp"
)

// failTwice answers 503 twice, then 200: a call that needs three attempts.
func failTwice() http.Handler {
	var n atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"reference":"ord-1","status":"successful"}`)
	})
}

// quick keeps the examples fast; leave the default backoff in production.
var quick = spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) })

// otelhttp outside spotflowhttp's transport: one span per call, with the
// final status.
func Example_perCall() {
	srv := httptest.NewServer(failTwice())
	defer srv.Close()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))

	// With a global provider (otel.SetTracerProvider) WithTracerProvider is
	// not needed.
	client := &http.Client{Transport: otelhttp.NewTransport(
		spotflowhttp.NewTransport(nil, quick),
		otelhttp.WithTracerProvider(tp),
	)}

	resp, err := client.Get(srv.URL + "/api/v1/payments/verify?reference=ord-1")
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // ends the span

	for _, s := range sr.Ended() {
		fmt.Println(s.Name(), statusOf(s), s.Status().Code)
	}
	// Output:
	// HTTP GET 200 Unset
}

// otelhttp inside spotflowhttp's transport: one span per attempt.
func Example_perAttempt() {
	srv := httptest.NewServer(failTwice())
	defer srv.Close()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))

	client := &http.Client{Transport: spotflowhttp.NewTransport(
		otelhttp.NewTransport(nil, otelhttp.WithTracerProvider(tp)),
		quick,
	)}

	resp, err := client.Get(srv.URL + "/api/v1/payments/verify?reference=ord-1")
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	for _, s := range sr.Ended() {
		fmt.Println(s.Name(), statusOf(s), s.Status().Code)
	}
	// Output:
	// HTTP GET 503 Error
	// HTTP GET 503 Error
	// HTTP GET 200 Unset
}

// statusOf is the HTTP status a span recorded.
func statusOf(s sdktrace.ReadOnlySpan) int64 {
	for _, kv := range s.Attributes() {
		if kv.Key == attribute.Key("http.response.status_code") {
			return kv.Value.AsInt64()
		}
	}
	return 0
}
