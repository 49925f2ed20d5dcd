package otelspotflow_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/otelspotflow"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// harness is a transport with the OpenTelemetry observer against the
// simulator, both on one fake clock, and the reader of its metrics.
type harness struct {
	t      *testing.T
	srv    *spotflowtest.Server
	clock  *spotflowtest.Clock
	reader *sdkmetric.ManualReader
	tr     *spotflowhttp.Transport
	client *http.Client
}

func newHarness(t *testing.T, server []spotflowtest.Option, opts ...spotflowhttp.Option) *harness {
	// Now, not a fixed date: context deadlines are on the real clock.
	clock := spotflowtest.NewClock(time.Now())
	srv := spotflowtest.NewServer(append([]spotflowtest.Option{spotflowtest.WithClock(clock.Now)}, server...)...)
	t.Cleanup(srv.Close)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	obs, err := otelspotflow.NewObserver(mp)
	if err != nil {
		t.Fatal(err)
	}
	base := srv.Client().Transport
	opts = append([]spotflowhttp.Option{spotflowhttp.WithClock(clock), spotflowhttp.WithObserver(obs),
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Second) })}, opts...)
	tr := spotflowhttp.NewTransport(base, opts...)
	t.Cleanup(srv.Client().CloseIdleConnections)
	return &harness{t: t, srv: srv, clock: clock, reader: reader, tr: tr, client: &http.Client{Transport: tr}}
}

func (h *harness) do(ctx context.Context, method, path, body string) *http.Response {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.srv.BaseURL()+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.srv.SecretKey())
	resp, err := h.client.Do(req)
	if err != nil {
		return nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const payment = `{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`

// collected is one collection of the reader, by instrument name.
type collected map[string]metricdata.Aggregation

func (h *harness) collect() collected {
	h.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		h.t.Fatal(err)
	}
	out := collected{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelspotflow.ScopeName {
			h.t.Errorf("scope %q, want %q", sm.Scope.Name, otelspotflow.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// attrs renders an attribute set as "k=v k=v", sorted, for comparison.
func attrs(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// points renders every data point of the named instrument as
// "attributes: value", sorted; a histogram's value is "count/sum".
func (c collected) points(name string) []string {
	var out []string
	switch d := c[name].(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, fmt.Sprintf("%s: %d", attrs(p.Attributes), p.Value))
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			out = append(out, fmt.Sprintf("%s: %g", attrs(p.Attributes), p.Value))
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, fmt.Sprintf("%s: %d/%g", attrs(p.Attributes), p.Count, p.Sum))
		}
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			out = append(out, fmt.Sprintf("%s: %d/%d", attrs(p.Attributes), p.Count, p.Sum))
		}
	case nil:
	default:
		panic(fmt.Sprintf("%s: %T", name, d))
	}
	sort.Strings(out)
	return out
}

// expect compares the points of the named instrument with want, each
// "attributes: value" with the attributes in any order.
func expect(t *testing.T, c collected, name string, want ...string) {
	t.Helper()
	got := c.points(name)
	for i, w := range want {
		a, v, _ := strings.Cut(w, ": ")
		parts := strings.Fields(a)
		sort.Strings(parts)
		want[i] = strings.Join(parts, " ") + ": " + v
	}
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n  %s\nwant\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// server is the address attributes of the harness's simulator.
func (h *harness) server() string {
	u, _ := url.Parse(h.srv.URL)
	port, _ := strconv.Atoi(u.Port())
	return fmt.Sprintf("server.address=%s server.port=%d", u.Hostname(), port)
}

// A payment answered 503 (the simulator in an outage), then 201 a second
// later: one retry for a server error, a call of two attempts that took the
// second it waited.
func TestMetricsOf503Then201(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.StartOutage(500 * time.Millisecond)
	if resp := h.do(context.Background(), "POST", "/payments", payment); resp == nil || resp.StatusCode != 201 {
		t.Fatalf("got %v", resp)
	}
	c := h.collect()
	call := "http.request.method=POST http.response.status_code=201 " + h.server() + " spotflow.category=none spotflow.outcome=success"
	expect(t, c, "spotflow.client.call.duration", call+": 1/1")
	expect(t, c, "spotflow.client.call.attempts", call+": 1/2")
	expect(t, c, "spotflow.client.retries",
		"http.request.method=POST http.response.status_code=503 "+h.server()+" spotflow.retry.reason=server_error: 1")
	expect(t, c, "spotflow.client.retries.stopped")
	expect(t, c, "spotflow.client.ratelimit.wait.duration")
	expect(t, c, "spotflow.client.retry_budget.available", h.server()+": 100")
}

// A 429 with Retry-After (the simulator's rate limit, without X-RateLimit
// headers to warn the client first) is retried once for rate_limited after
// the wait it asked for; the next call waits out the cool-down it started.
func TestMetricsOf429WithRetryAfter(t *testing.T) {
	h := newHarness(t, []spotflowtest.Option{spotflowtest.WithRateLimit(0.5, 1), spotflowtest.WithRateLimitHeaders(false)},
		spotflowhttp.WithMaxAttempts(1))
	ctx := context.Background()
	h.do(ctx, "GET", "/payments/verify?reference=r1", "") // 404: the token is spent
	h.do(ctx, "GET", "/payments/verify?reference=r1", "") // 429, Retry-After: 2, not retried (1 attempt)
	h.do(ctx, "GET", "/payments/verify?reference=r1", "") // waits 2 s for the cool-down, then 404
	c := h.collect()
	get := "http.request.method=GET " + h.server()
	expect(t, c, "spotflow.client.call.attempts",
		get+" http.response.status_code=404 spotflow.category=dont_retry spotflow.outcome=error_response: 2/2",
		get+" http.response.status_code=429 spotflow.category=retry spotflow.outcome=error_response: 1/1")
	expect(t, c, "spotflow.client.retries.stopped", get+" spotflow.retry.stop_reason=max_attempts: 1")
	expect(t, c, "spotflow.client.ratelimit.wait.duration", get+" spotflow.ratelimit.kind=cool_down: 1/2")
	expect(t, c, "spotflow.client.ratelimit.refusals")

	// With attempts to spare, the 429 is retried after its Retry-After.
	h2 := newHarness(t, []spotflowtest.Option{spotflowtest.WithRateLimit(0.5, 1), spotflowtest.WithRateLimitHeaders(false)})
	h2.do(ctx, "GET", "/payments/verify?reference=r1", "")
	h2.do(ctx, "GET", "/payments/verify?reference=r1", "")
	c = h2.collect()
	get = "http.request.method=GET " + h2.server()
	expect(t, c, "spotflow.client.retries", get+" http.response.status_code=429 spotflow.retry.reason=rate_limited: 1")
	expect(t, c, "spotflow.client.call.duration",
		get+" http.response.status_code=404 spotflow.category=dont_retry spotflow.outcome=error_response: 2/2")
}

// A call whose deadline comes before the end of an X-RateLimit hold is
// refused locally, without an attempt.
func TestMetricsOfARefusal(t *testing.T) {
	h := newHarness(t, []spotflowtest.Option{spotflowtest.WithRateLimit(0.1, 1)})
	ctx := context.Background()
	h.do(ctx, "GET", "/payments/verify?reference=r1", "") // Remaining: 0, reset in 10 s
	// Before the 10 s hold ends, with room: the deadline is in real time.
	dl, cancel := context.WithDeadline(ctx, h.clock.Now().Add(5*time.Second))
	defer cancel()
	h.do(dl, "GET", "/payments/verify?reference=r1", "")
	c := h.collect()
	get := "http.request.method=GET " + h.server()
	expect(t, c, "spotflow.client.ratelimit.refusals", get+" spotflow.ratelimit.kind=ratelimit_hold: 1")
	expect(t, c, "spotflow.client.call.attempts",
		get+" http.response.status_code=404 spotflow.category=dont_retry spotflow.outcome=error_response: 1/1",
		get+" spotflow.category=retry spotflow.outcome=deadline: 1/0")
}

// In an outage, a budget of 2 retries lets the first call retry twice;
// the budget is then empty and the three calls after it stop at their first
// attempt.
func TestMetricsOfAnOutageWithTheBudgetExhausted(t *testing.T) {
	h := newHarness(t, nil, spotflowhttp.WithRetryBudget(2))
	h.srv.StartOutage(time.Hour)
	for i := 0; i < 4; i++ {
		h.do(context.Background(), "GET", "/payments/verify?reference=r1", "")
	}
	c := h.collect()
	get := "http.request.method=GET " + h.server()
	call := get + " http.response.status_code=503 spotflow.category=retry spotflow.outcome=error_response"
	expect(t, c, "spotflow.client.call.attempts", call+": 4/6")
	expect(t, c, "spotflow.client.call.duration", call+": 4/2")
	expect(t, c, "spotflow.client.retries", get+" http.response.status_code=503 spotflow.retry.reason=server_error: 2")
	expect(t, c, "spotflow.client.retries.stopped", get+" spotflow.retry.stop_reason=budget_empty: 4")
	expect(t, c, "spotflow.client.retry_budget.available", h.server()+": 0")
}

func TestNewObserverRejectsANilProvider(t *testing.T) {
	if obs, err := otelspotflow.NewObserver(nil); err == nil || obs != nil {
		t.Errorf("NewObserver(nil) = %v, %v; want an error", obs, err)
	}
}
