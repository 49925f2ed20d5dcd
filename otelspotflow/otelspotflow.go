// Package otelspotflow records what spotflowhttp's stack does as
// OpenTelemetry metrics: how long calls take and how many attempts they
// need, why they are retried and why retries stop, how long the rate limiter
// holds requests back and how many it refuses, and what is left of the retry
// budget.
//
//	obs, err := otelspotflow.NewObserver(meterProvider)
//	if err != nil { ... }
//	client.Transport = spotflowhttp.NewTransport(client.Transport, spotflowhttp.WithObserver(obs))
//
// It complements otelhttp rather than replacing it: put otelhttp outside the
// stack for one span per call (and http.client.request.duration), and this
// package's observer inside for the policy's own metrics. The observer sees
// the call's context, so exemplars link its measurements to otelhttp's
// spans, and WithLogger's lines go through slog with that context too.
//
// The instruments, in the meter named by [ScopeName], follow OpenTelemetry's
// naming guidelines:
//
//	spotflow.client.call.duration            histogram, s          every call, waits included
//	spotflow.client.call.attempts            histogram, {attempt}  every call
//	spotflow.client.retries                  counter, {retry}      by spotflow.retry.reason
//	spotflow.client.retries.stopped          counter, {call}       by spotflow.retry.stop_reason
//	spotflow.client.ratelimit.wait.duration  histogram, s          by spotflow.ratelimit.kind
//	spotflow.client.ratelimit.refusals       counter, {request}    by spotflow.ratelimit.kind
//	spotflow.client.retry_budget.available   gauge, {retry}        by host (the first 1,024), as the last call left it
//
// Every measurement carries http.request.method (one of the methods HTTP
// defines, else _OTHER), server.address and server.port (when the URL has
// one); the call's carry spotflow.category, spotflow.outcome and
// http.response.status_code (when there was a response); retries carry the
// status too. All are bounded: no idempotency key, no reference, no path,
// since paths may hold ids.
package otelspotflow

import (
	"context"
	"errors"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/spotflow-go/spotflowhttp"
)

// ScopeName is the instrumentation scope of the meter the instruments are
// created in.
const ScopeName = "github.com/spotflow-go/spotflowhttp/otelspotflow"

// The attribute keys of this package, besides OpenTelemetry's
// http.request.method, http.response.status_code, server.address and
// server.port.
const (
	// CategoryKey is the recovery category of a call's final answer
	// (spotflowhttp.Category.String: none, retry, dont_retry, escalate,
	// treat_as_success).
	CategoryKey = attribute.Key("spotflow.category")
	// OutcomeKey is how a call ended (spotflowhttp.CallOutcome).
	OutcomeKey = attribute.Key("spotflow.outcome")
	// RetryReasonKey is why an attempt was retried
	// (spotflowhttp.RetryReason).
	RetryReasonKey = attribute.Key("spotflow.retry.reason")
	// StopReasonKey is why a call stopped retrying
	// (spotflowhttp.StopReason).
	StopReasonKey = attribute.Key("spotflow.retry.stop_reason")
	// RateLimitKindKey is what held a request back
	// (spotflowhttp.RateLimitKind).
	RateLimitKindKey = attribute.Key("spotflow.ratelimit.kind")
)

const (
	methodKey = attribute.Key("http.request.method")
	statusKey = attribute.Key("http.response.status_code")
	hostKey   = attribute.Key("server.address")
	portKey   = attribute.Key("server.port")
)

// Bucket boundaries. Calls can wait 30 s for a server_error and up to 60 s
// for a Retry-After, so the durations go past OpenTelemetry's HTTP defaults
// (which end at 10 s).
var (
	durationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 120}
	attemptBounds  = []float64{0, 1, 2, 3, 4, 5, 6, 8, 10}
	waitBounds     = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60}
)

// NewObserver returns an observer for spotflowhttp.WithObserver that records
// the metrics listed in the package documentation with a meter from mp. It
// returns an error if mp is nil or an instrument cannot be created. The
// observer is safe for concurrent use and may serve several transports.
func NewObserver(mp metric.MeterProvider) (*spotflowhttp.Observer, error) {
	if mp == nil {
		return nil, errors.New("otelspotflow: nil MeterProvider")
	}
	m := mp.Meter(ScopeName)
	r := new(recorder)
	var errs [7]error
	r.callDuration, errs[0] = m.Float64Histogram("spotflow.client.call.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of Spotflow API calls through the spotflowhttp stack, retries and waits included."),
		metric.WithExplicitBucketBoundaries(durationBounds...))
	r.callAttempts, errs[1] = m.Int64Histogram("spotflow.client.call.attempts",
		metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts sent per Spotflow API call, retries included; 0 for a call answered locally."),
		metric.WithExplicitBucketBoundaries(attemptBounds...))
	r.retries, errs[2] = m.Int64Counter("spotflow.client.retries",
		metric.WithUnit("{retry}"),
		metric.WithDescription("Retries scheduled, by the kind of failure retried."))
	r.stopped, errs[3] = m.Int64Counter("spotflow.client.retries.stopped",
		metric.WithUnit("{call}"),
		metric.WithDescription("Calls that stopped retrying a retryable failure, by reason."))
	r.waits, errs[4] = m.Float64Histogram("spotflow.client.ratelimit.wait.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Time requests were held back by the client-side rate limiter, by what held them."),
		metric.WithExplicitBucketBoundaries(waitBounds...))
	r.refusals, errs[5] = m.Int64Counter("spotflow.client.ratelimit.refusals",
		metric.WithUnit("{request}"),
		metric.WithDescription("Requests the client-side rate limiter refused to send, by what held them."))
	// The budget is a level: an asynchronous gauge reads it when metrics
	// are collected, so a call only stores it.
	r.budget, errs[6] = m.Float64ObservableGauge("spotflow.client.retry_budget.available",
		metric.WithUnit("{retry}"),
		metric.WithDescription("Retries left in the retry budget of a host, as of the last call to it that ended."),
		metric.WithFloat64Callback(r.observeBudgets))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return &spotflowhttp.Observer{
		RetryScheduled:   r.retryScheduled,
		RetriesStopped:   r.retriesStopped,
		RateLimitWaited:  r.rateLimitWaited,
		RateLimitRefused: r.rateLimitRefused,
		CallDone:         r.callDone,
	}, nil
}

type recorder struct {
	callDuration metric.Float64Histogram
	callAttempts metric.Int64Histogram
	retries      metric.Int64Counter
	stopped      metric.Int64Counter
	waits        metric.Float64Histogram
	refusals     metric.Int64Counter
	budget       metric.Float64ObservableGauge

	// Every call records with the attributes of its kind of call, and
	// stores the budget of its host: building an attribute set sorts and
	// allocates, so the sets are kept, in maps that are copied on write
	// (rarely: the keys are as bounded as the attributes) and read without
	// a lock.
	calls cache[callKey, []metric.RecordOption]
	hosts cache[string, *host]
}

// host is the budget of one host, as the last call to it that ended saw it.
type host struct {
	attrs  metric.MeasurementOption
	budget atomic.Uint64 // math.Float64bits
}

func (r *recorder) observeBudgets(_ context.Context, o metric.Float64Observer) error {
	for _, h := range r.hosts.all() {
		o.Observe(math.Float64frombits(h.budget.Load()), h.attrs)
	}
	return nil
}

type callKey struct {
	method, host string
	category     spotflowhttp.Category
	outcome      spotflowhttp.CallOutcome
	status       int
}

func (r *recorder) callDone(ctx context.Context, ev spotflowhttp.CallEvent) {
	o := r.calls.get(callKey{ev.Method, ev.Host, ev.Category, ev.Outcome, ev.StatusCode}, func() []metric.RecordOption {
		attrs := append(request(ev.RequestInfo, 3),
			CategoryKey.String(ev.Category.String()), OutcomeKey.String(string(ev.Outcome)))
		if ev.StatusCode != 0 {
			attrs = append(attrs, statusKey.Int(ev.StatusCode))
		}
		return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	})
	r.callDuration.Record(ctx, ev.Duration.Seconds(), o...)
	r.callAttempts.Record(ctx, int64(ev.Attempts), o...)
	if ev.RetryBudget >= 0 {
		h := r.hosts.get(ev.Host, func() *host {
			return &host{attrs: metric.WithAttributeSet(attribute.NewSet(server(ev.Host, nil)...))}
		})
		h.budget.Store(math.Float64bits(ev.RetryBudget))
	}
}

// cache keeps the value made for each key, up to maxCached keys; past
// that it makes them afresh each time (and all does not list them).
type cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serializes writers
}

const maxCached = 1024

func (c *cache[K, V]) get(k K, mk func() V) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v // made by another goroutine meanwhile
		}
		if len(*old) >= maxCached {
			return mk()
		}
	}
	v := mk()
	m := maps.Clone(derefOr(old))
	if m == nil {
		m = map[K]V{}
	}
	m[k] = v
	c.m.Store(&m)
	return v
}

// all returns the cached values.
func (c *cache[K, V]) all() []V {
	m := c.m.Load()
	if m == nil {
		return nil
	}
	return slices.Collect(maps.Values(*m))
}

func derefOr[K comparable, V any](m *map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	return *m
}

func (r *recorder) retryScheduled(ctx context.Context, ev spotflowhttp.RetryEvent) {
	attrs := append(request(ev.RequestInfo, 2), RetryReasonKey.String(string(ev.Reason)))
	if ev.StatusCode != 0 {
		attrs = append(attrs, statusKey.Int(ev.StatusCode))
	}
	r.retries.Add(ctx, 1, metric.WithAttributes(attrs...))
}

func (r *recorder) retriesStopped(ctx context.Context, ev spotflowhttp.StopEvent) {
	attrs := append(request(ev.RequestInfo, 1), StopReasonKey.String(string(ev.Reason)))
	r.stopped.Add(ctx, 1, metric.WithAttributes(attrs...))
}

func (r *recorder) rateLimitWaited(ctx context.Context, ev spotflowhttp.WaitEvent) {
	attrs := append(request(ev.RequestInfo, 1), RateLimitKindKey.String(string(ev.Kind)))
	r.waits.Record(ctx, ev.Wait.Seconds(), metric.WithAttributes(attrs...))
}

func (r *recorder) rateLimitRefused(ctx context.Context, ev spotflowhttp.WaitEvent) {
	attrs := append(request(ev.RequestInfo, 1), RateLimitKindKey.String(string(ev.Kind)))
	r.refusals.Add(ctx, 1, metric.WithAttributes(attrs...))
}

// request returns the attributes every measurement has, with room for
// extra more.
func request(ri spotflowhttp.RequestInfo, extra int) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 3+extra)
	attrs = append(attrs, methodKey.String(method(ri.Method)))
	return server(ri.Host, attrs)
}

// server appends server.address and, if the host has one, server.port.
func server(host string, attrs []attribute.KeyValue) []attribute.KeyValue {
	u := url.URL{Host: host}
	attrs = append(attrs, hostKey.String(strings.ToLower(u.Hostname())))
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			attrs = append(attrs, portKey.Int(n))
		}
	}
	return attrs
}

// method keeps the methods HTTP defines and folds the rest into _OTHER, as
// OpenTelemetry's HTTP conventions do, so that a client cannot make the
// label unbounded.
func method(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return m
	}
	return "_OTHER"
}
