package otelspotflow_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/otelspotflow"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// traceHandler adds the trace of the span in a record's context to the
// record, as an OpenTelemetry log bridge does.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// Spans from otelhttp, metrics from otelspotflow and log lines that carry
// the span's trace, for one payment that is retried once.
func Example() {
	// The simulator in a short outage, and a fake clock shared with it so
	// that the example waits for nothing; in production, leave both out.
	clock := spotflowtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	srv := spotflowtest.NewServer(spotflowtest.WithClock(clock.Now))
	defer srv.Close()
	srv.StartOutage(time.Second)

	// Traces and metrics; in production, the global providers and an
	// exporter.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs bytes.Buffer
	logger := slog.New(traceHandler{slog.NewTextHandler(&logs, &slog.HandlerOptions{
		Level:       slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
	})})

	obs, err := otelspotflow.NewObserver(mp)
	if err != nil {
		panic(err)
	}
	// otelhttp outside the stack: one span per call, whose context the
	// stack's observer and logger get.
	client := &http.Client{Transport: otelhttp.NewTransport(
		spotflowhttp.NewTransport(srv.Client().Transport,
			spotflowhttp.WithObserver(obs),
			spotflowhttp.WithLogger(logger),
			spotflowhttp.WithClock(clock),
			spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(2 * time.Second) }),
		),
		otelhttp.WithTracerProvider(tp),
	)}

	req, _ := http.NewRequest("POST", srv.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // ends the span
	fmt.Println("status:", resp.StatusCode, "attempts:", spotflowhttp.AttemptsOf(resp))

	span := spans.Ended()[0]
	fmt.Println("span:", span.Name())

	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Histogram[float64]:
			p := d.DataPoints[0]
			// The SDK keeps exemplars from sampled spans in the context:
			// the measurement links to the call's trace.
			linked := len(p.Exemplars) > 0 && bytes.Equal(p.Exemplars[0].TraceID, traceID(span))
			fmt.Printf("metric: %s %g%s (exemplar in the span's trace: %t)\n", m.Name, p.Sum, m.Unit, linked)
		case metricdata.Histogram[int64]:
			fmt.Printf("metric: %s %d\n", m.Name, d.DataPoints[0].Sum)
		case metricdata.Sum[int64]:
			reason, _ := d.DataPoints[0].Attributes.Value(otelspotflow.RetryReasonKey)
			fmt.Printf("metric: %s %d (%s)\n", m.Name, d.DataPoints[0].Value, reason.AsString())
		}
	}

	// The log line carries the trace of the span.
	line := strings.ReplaceAll(logs.String(), span.SpanContext().TraceID().String(), "<the span's trace>")
	fmt.Print("log: ", line)
	// Output:
	// status: 201 attempts: 2
	// span: HTTP POST
	// metric: spotflow.client.call.duration 2s (exemplar in the span's trace: true)
	// metric: spotflow.client.call.attempts 2
	// metric: spotflow.client.retries 1 (server_error)
	// log: level=DEBUG msg="spotflow: retry" method=POST path=/api/v1/payments attempt=1 reason=server_error wait=2s status=503 code="" key="<the key>" error=<nil> trace_id=<the span's trace>
}

func traceID(s sdktrace.ReadOnlySpan) []byte {
	id := s.SpanContext().TraceID()
	return id[:]
}

// dropTime keeps the example's output the same from run to run.
func dropTime(a slog.Attr) slog.Attr {
	switch a.Key {
	case slog.TimeKey:
		return slog.Attr{}
	case "key":
		return slog.String("key", "<the key>")
	}
	return a
}
