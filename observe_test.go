package spotflowhttp_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// callerKey marks the caller's context: every event must carry it.
type callerKey struct{}

func callerContext() context.Context {
	return context.WithValue(context.Background(), callerKey{}, "caller")
}

// recording is an Observer that keeps every event and checks that each comes
// with the caller's context.
type recording struct {
	t      *testing.T
	mu     sync.Mutex
	events []any
}

func (r *recording) add(ctx context.Context, ev any) {
	if v, _ := ctx.Value(callerKey{}).(string); v != "caller" {
		r.t.Errorf("%T came without the caller's context (value %q): %+v", ev, v, ev)
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recording) observer() *spotflowhttp.Observer {
	return &spotflowhttp.Observer{
		AttemptSent:      func(ctx context.Context, ev spotflowhttp.AttemptEvent) { r.add(ctx, ev) },
		RetryScheduled:   func(ctx context.Context, ev spotflowhttp.RetryEvent) { r.add(ctx, ev) },
		RetriesStopped:   func(ctx context.Context, ev spotflowhttp.StopEvent) { r.add(ctx, ev) },
		RateLimitWaited:  func(ctx context.Context, ev spotflowhttp.WaitEvent) { r.add(ctx, waited(ev)) },
		RateLimitRefused: func(ctx context.Context, ev spotflowhttp.WaitEvent) { r.add(ctx, refused(ev)) },
		CoolDownStarted:  func(ctx context.Context, ev spotflowhttp.CoolDownEvent) { r.add(ctx, ev) },
		Halted:           func(ctx context.Context, ev spotflowhttp.HaltEvent) { r.add(ctx, ev) },
		CallDone:         func(ctx context.Context, ev spotflowhttp.CallEvent) { r.add(ctx, ev) },
		Resumed: func(ctx context.Context, ev spotflowhttp.ResumeEvent) {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		},
	}
}

// waited and refused tell the two uses of WaitEvent apart in a recording.
type (
	waited  spotflowhttp.WaitEvent
	refused spotflowhttp.WaitEvent
)

// only returns the recorded events of type E, in order.
func only[E any](r *recording) []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []E
	for _, ev := range r.events {
		if e, ok := ev.(E); ok {
			out = append(out, e)
		}
	}
	return out
}

// canned is one scripted reply of an in-memory Spotflow.
type canned func(*http.Request) (*http.Response, error)

func respond(status int, body string, header ...string) canned {
	return func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: status, Header: headers(header...),
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
}

func failWith(err error) canned {
	return func(*http.Request) (*http.Response, error) { return nil, err }
}

// scripted answers requests in order, repeating the last answer, after
// reading and closing the request body as a real transport does.
func scripted(answers ...canned) http.RoundTripper {
	var mu sync.Mutex
	n := 0
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		mu.Lock()
		a := answers[min(n, len(answers)-1)]
		n++
		mu.Unlock()
		return a(r)
	})
}

const (
	verifyURL   = "https://api.spotflow.co/api/v1/payments/verify?reference=ref_1"
	paymentsURL = "https://api.spotflow.co/api/v1/payments"
	body503     = `<html>503</html>`
	body500     = `{"code":"server_error","message":"Internal server error"}`
	body429     = `{"code":"rate_limit_exceeded","message":"Too many requests"}`
	body401     = `{"code":"invalid_credentials","message":"Invalid API key"}`
)

// observed is a Transport over base with the fake clock, immediate backoff
// and a recording observer.
func observed(t *testing.T, base http.RoundTripper, opts ...spotflowhttp.Option) (*spotflowhttp.Transport, *recording, *fakeClock) {
	rec := &recording{t: t}
	clock := newFakeClock()
	opts = append([]spotflowhttp.Option{spotflowhttp.WithClock(clock), spotflowhttp.WithBackoff(constantBackoff(0)),
		spotflowhttp.WithObserver(rec.observer())}, opts...)
	return spotflowhttp.NewTransport(base, opts...), rec, clock
}

// call sends one request with the caller's context (and deadline d, if not
// 0) and closes the response body.
func observedCall(t *testing.T, tr http.RoundTripper, method, url, body string, d time.Duration) (*http.Response, error) {
	t.Helper()
	ctx := callerContext()
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	req := mustRequest(t, method, url, body).WithContext(ctx)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestObserverRetryReasons(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  canned
		opts   []spotflowhttp.Option
		reason spotflowhttp.RetryReason
		status int
		wait   time.Duration
	}{
		{"429 with Retry-After", respond(429, body429, "Retry-After", "7"), nil, spotflowhttp.RetryRateLimited, 429, 7 * time.Second},
		{"500 server_error", respond(500, body500), nil, spotflowhttp.RetryServerError, 500, 30 * time.Second},
		{"503 from a proxy", respond(503, body503), nil, spotflowhttp.RetryServerError, 503, 0},
		{"connection reset", failWith(syscall.ECONNRESET), nil, spotflowhttp.RetryConnection, 0, 0},
		{"a code made retryable", respond(409, `{"code":"lock_timeout"}`),
			[]spotflowhttp.Option{spotflowhttp.WithCodeCategory("lock_timeout", spotflowhttp.CategoryRetry)}, spotflowhttp.RetryCode, 409, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, rec, _ := observed(t, scripted(tc.first, respond(200, `{}`)), tc.opts...)
			resp, err := observedCall(t, tr, "GET", verifyURL, "", 0)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("got %v, %v", resp, err)
			}
			retries := only[spotflowhttp.RetryEvent](rec)
			if len(retries) != 1 {
				t.Fatalf("retries = %+v, want one", retries)
			}
			ev := retries[0]
			want := spotflowhttp.RequestInfo{Method: "GET", Host: "api.spotflow.co", Path: "/api/v1/payments/verify"}
			if ev.RequestInfo != want || ev.Reason != tc.reason || ev.Attempt != 1 || ev.StatusCode != tc.status || ev.Wait != tc.wait {
				t.Errorf("retry = %+v, want %+v, reason %s, attempt 1, status %d, wait %v", ev, want, tc.reason, tc.status, tc.wait)
			}
			if tc.status == 0 && !errors.Is(ev.Err, syscall.ECONNRESET) {
				t.Errorf("Err = %v, want the connection error", ev.Err)
			}
			checkSucceededOnSecondAttempt(t, rec, resp, want, tc.wait)
		})
	}
}

// checkSucceededOnSecondAttempt checks the events of a call that succeeded
// on its second attempt, after waiting wait.
func checkSucceededOnSecondAttempt(t *testing.T, rec *recording, resp *http.Response, want spotflowhttp.RequestInfo, wait time.Duration) {
	t.Helper()
	if stops := only[spotflowhttp.StopEvent](rec); len(stops) != 0 {
		t.Errorf("a call that succeeded reported a stop: %+v", stops)
	}
	attempts := only[spotflowhttp.AttemptEvent](rec)
	if len(attempts) != 2 || attempts[0].Attempt != 1 || attempts[1].Attempt != 2 || attempts[1].RequestInfo != want {
		t.Errorf("attempts = %+v, want 1 and 2", attempts)
	}
	done := only[spotflowhttp.CallEvent](rec)
	if len(done) != 1 || done[0].Attempts != 2 || done[0].Outcome != spotflowhttp.CallSuccess ||
		done[0].Category != spotflowhttp.CategoryNone || done[0].StatusCode != 200 || done[0].Duration != wait {
		t.Errorf("call done = %+v, want 2 attempts, success, status 200, %v", done, wait)
	}
	if n := spotflowhttp.AttemptsOf(resp); n != 2 {
		t.Errorf("AttemptsOf = %d, want 2", n)
	}
}

func TestObserverStopReasons(t *testing.T) {
	unknownCA := x509.UnknownAuthorityError{}
	for _, tc := range []struct {
		name     string
		base     http.RoundTripper
		method   string
		body     string
		deadline time.Duration
		opts     []spotflowhttp.Option
		reason   spotflowhttp.StopReason
		attempts int
		status   int
		wait     time.Duration
	}{
		{name: "attempts used up", base: scripted(respond(503, body503)), opts: []spotflowhttp.Option{spotflowhttp.WithMaxAttempts(3)},
			reason: spotflowhttp.StopMaxAttempts, attempts: 3, status: 503},
		{name: "budget empty", base: scripted(respond(503, body503)), opts: []spotflowhttp.Option{spotflowhttp.WithRetryBudget(1)},
			reason: spotflowhttp.StopBudgetEmpty, attempts: 2, status: 503},
		{name: "deadline before the 30 s server_error wait", base: scripted(respond(500, body500)), deadline: 10 * time.Second,
			reason: spotflowhttp.StopDeadline, attempts: 1, status: 500, wait: 30 * time.Second},
		{name: "POST without key or reference", base: scripted(respond(503, body503)), method: "POST", body: `{"amount":1}`,
			opts:   []spotflowhttp.Option{spotflowhttp.WithKeyMethods()},
			reason: spotflowhttp.StopNotRepeatable, attempts: 1, status: 503},
		{name: "Retry-After over the cap", base: scripted(respond(503, body503, "Retry-After", "120")),
			reason: spotflowhttp.StopRetryAfterOverCap, attempts: 1, status: 503, wait: 120 * time.Second},
		{name: "certificate not trusted", base: scripted(failWith(unknownCA)),
			reason: spotflowhttp.StopPermanent, attempts: 1},
		{name: "rate limiter refuses the retry", base: scripted(respond(503, body503)),
			opts:   []spotflowhttp.Option{spotflowhttp.WithRateLimit(0.01, 1)},
			reason: spotflowhttp.StopRateLimited, attempts: 1, status: 503, wait: 100 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, rec, _ := observed(t, tc.base, tc.opts...)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			url := verifyURL
			if method == "POST" {
				url = paymentsURL
			}
			observedCall(t, tr, method, url, tc.body, tc.deadline)
			stops := only[spotflowhttp.StopEvent](rec)
			if len(stops) != 1 {
				t.Fatalf("stops = %+v, want one", stops)
			}
			ev := stops[0]
			if ev.Reason != tc.reason || ev.Attempts != tc.attempts || ev.StatusCode != tc.status || ev.Wait != tc.wait ||
				ev.Method != method || ev.Host != "api.spotflow.co" {
				t.Errorf("stop = %+v, want reason %s, %d attempts, status %d, wait %v", ev, tc.reason, tc.attempts, tc.status, tc.wait)
			}
			done := only[spotflowhttp.CallEvent](rec)
			if len(done) != 1 || done[0].Attempts != tc.attempts {
				t.Errorf("call done = %+v, want %d attempts", done, tc.attempts)
			}
		})
	}
}

// A context canceled during the wait before a retry stops the retries with
// reason canceled, and the call ends canceled.
func TestObserverStopCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(callerContext())
	defer cancel()
	base := scripted(func(r *http.Request) (*http.Response, error) {
		cancel() // the caller gives up while the 503 comes back
		return respond(503, body503)(r)
	})
	tr, rec, _ := observed(t, base)
	req := mustRequest(t, "GET", verifyURL, "").WithContext(ctx)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	stops := only[spotflowhttp.StopEvent](rec)
	if len(stops) != 1 || stops[0].Reason != spotflowhttp.StopCanceled || !errors.Is(stops[0].Err, context.Canceled) {
		t.Errorf("stops = %+v, want one, canceled", stops)
	}
	done := only[spotflowhttp.CallEvent](rec)
	if len(done) != 1 || done[0].Outcome != spotflowhttp.CallCanceled || !done[0].Uncertain {
		t.Errorf("call done = %+v, want canceled and uncertain (a 503 came back)", done)
	}
}

// In an outage, a small retry budget lets the first call retry and then
// runs dry: every call that lost its retries says so.
func TestObserverOutageReportsBudgetEmpty(t *testing.T) {
	tr, rec, _ := observed(t, scripted(respond(503, body503)), spotflowhttp.WithRetryBudget(2))
	for i := 0; i < 4; i++ {
		observedCall(t, tr, "GET", verifyURL, "", 0)
	}
	stops := only[spotflowhttp.StopEvent](rec)
	var got []string
	for _, s := range stops {
		got = append(got, fmt.Sprintf("%s after %d", s.Reason, s.Attempts))
	}
	want := "budget_empty after 3, budget_empty after 1, budget_empty after 1, budget_empty after 1"
	if strings.Join(got, ", ") != want {
		t.Errorf("stops: %s\nwant   %s", strings.Join(got, ", "), want)
	}
	done := only[spotflowhttp.CallEvent](rec)
	if len(done) != 4 || done[3].RetryBudget != 0 {
		t.Errorf("the last call saw a budget of %v, want 0: %+v", done[len(done)-1].RetryBudget, done)
	}
}

// The rate limiter reports each kind of wait with how long it held the
// request, and a cool-down when a response starts one.
func TestObserverRateLimitWaits(t *testing.T) {
	t.Run("cool-down after a 429", observeCoolDownAfter429)
	t.Run("X-RateLimit hold", observeRateLimitHold)
	t.Run("token bucket", observeTokenBucketWait)
	t.Run("adaptive", observeAdaptiveWaits)
	t.Run("a Limiter of yours", observeLimiterWait)
}

// A 429 with Retry-After is reported once as a cool-down, and the next
// call's wait as a wait of that kind.
func observeCoolDownAfter429(t *testing.T) {
	tr, rec, _ := observed(t, scripted(respond(429, body429, "Retry-After", "5"), respond(200, `{}`)),
		spotflowhttp.WithMaxAttempts(1))
	observedCall(t, tr, "GET", verifyURL, "", 0)
	observedCall(t, tr, "GET", verifyURL, "", 0)
	cds := only[spotflowhttp.CoolDownEvent](rec)
	if len(cds) != 1 || cds[0].Kind != spotflowhttp.RateLimitCoolDown || cds[0].Wait != 5*time.Second ||
		cds[0].StatusCode != 429 || cds[0].Method != "GET" {
		t.Errorf("cool-downs = %+v, want one of 5 s", cds)
	}
	waits := only[waited](rec)
	if len(waits) != 1 || waits[0].Kind != spotflowhttp.RateLimitCoolDown || waits[0].Wait != 5*time.Second {
		t.Errorf("waits = %+v, want a cool-down of 5 s", waits)
	}
}

// An exhausted X-RateLimit-Remaining on a 200 is reported as a hold
// until X-RateLimit-Reset, and so is the next call's wait.
func observeRateLimitHold(t *testing.T) {
	var clock *fakeClock
	base := scripted(func(r *http.Request) (*http.Response, error) {
		reset := strconv.FormatInt(clock.Now().Add(10*time.Second).Unix()+1, 10)
		return respond(200, `{}`, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", reset)(r)
	}, respond(200, `{}`))
	tr, rec, c := observed(t, base)
	clock = c
	observedCall(t, tr, "GET", verifyURL, "", 0)
	observedCall(t, tr, "GET", verifyURL, "", 0)
	cds := only[spotflowhttp.CoolDownEvent](rec)
	if len(cds) != 1 || cds[0].Kind != spotflowhttp.RateLimitHold || cds[0].Wait < 10*time.Second || cds[0].StatusCode != 200 {
		t.Errorf("cool-downs = %+v, want one hold of 10 to 11 s", cds)
	}
	waits := only[waited](rec)
	if len(waits) != 1 || waits[0].Kind != spotflowhttp.RateLimitHold || waits[0].Wait < 10*time.Second {
		t.Errorf("waits = %+v, want a hold of 10 to 11 s", waits)
	}
}

// The second call through a bucket of one per second waits a second.
func observeTokenBucketWait(t *testing.T) {
	tr, rec, _ := observed(t, scripted(respond(200, `{}`)), spotflowhttp.WithRateLimit(1, 1))
	observedCall(t, tr, "GET", verifyURL, "", 0)
	observedCall(t, tr, "GET", verifyURL, "", 0)
	waits := only[waited](rec)
	if len(waits) != 1 || waits[0].Kind != spotflowhttp.RateLimitTokenBucket || waits[0].Wait != time.Second {
		t.Errorf("waits = %+v, want a token bucket wait of 1 s", waits)
	}
}

// Adaptive pacing's waits are reported as adaptive ones.
func observeAdaptiveWaits(t *testing.T) {
	// A 429 without Retry-After: no cool-down, but the adaptive
	// limiter cuts the rate to what was admitted before it.
	answers := []canned{}
	for i := 0; i < 5; i++ {
		answers = append(answers, respond(200, `{}`))
	}
	answers = append(answers, respond(429, body429), respond(200, `{}`))
	tr, rec, _ := observed(t, scripted(answers...), spotflowhttp.WithAdaptiveRateLimit(), spotflowhttp.WithMaxAttempts(1))
	for i := 0; i < 8; i++ {
		observedCall(t, tr, "GET", verifyURL, "", 0)
	}
	waits := only[waited](rec)
	if len(waits) == 0 {
		t.Fatal("no adaptive wait")
	}
	for _, w := range waits {
		if w.Kind != spotflowhttp.RateLimitAdaptive || w.Wait <= 0 {
			t.Errorf("wait = %+v, want adaptive, > 0", w)
		}
	}
}

// A Limiter's wait is measured around its Wait, by the transport's clock.
func observeLimiterWait(t *testing.T) {
	var clock *fakeClock
	lim := limiterFunc(func(ctx context.Context) error { return clock.Sleep(ctx, 3*time.Second) })
	tr, rec, c := observed(t, scripted(respond(200, `{}`)), spotflowhttp.WithLimiter(lim))
	clock = c
	observedCall(t, tr, "GET", verifyURL, "", 0)
	waits := only[waited](rec)
	if len(waits) != 1 || waits[0].Kind != spotflowhttp.RateLimitLimiter || waits[0].Wait != 3*time.Second {
		t.Errorf("waits = %+v, want the limiter's 3 s", waits)
	}
}

type limiterFunc func(context.Context) error

func (f limiterFunc) Wait(ctx context.Context) error { return f(ctx) }

// A request the rate limiter refuses is reported with the kind of wait it
// was refused, the wait it would have needed and why; the call ends local,
// not uncertain, after no attempt.
func TestObserverRateLimitRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []spotflowhttp.Option
		deadline time.Duration
		kind     spotflowhttp.RateLimitKind
		wait     time.Duration
		err      error
	}{
		{"cool-down past the deadline", nil, 5 * time.Second, spotflowhttp.RateLimitCoolDown, 30 * time.Second, context.DeadlineExceeded},
		{"cool-down over the cap", []spotflowhttp.Option{spotflowhttp.WithMaxRetryAfter(10 * time.Second)}, 0,
			spotflowhttp.RateLimitCoolDown, 30 * time.Second, nil},
		{"a Limiter that fails", []spotflowhttp.Option{spotflowhttp.WithLimiter(failingLimiter{})}, 0,
			spotflowhttp.RateLimitLimiter, 0, errLimiterBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := scripted(respond(429, body429, "Retry-After", "30"))
			opts := append([]spotflowhttp.Option{spotflowhttp.WithMaxAttempts(1)}, tc.opts...)
			tr, rec, _ := observed(t, base, opts...)
			if tc.kind == spotflowhttp.RateLimitCoolDown {
				observedCall(t, tr, "GET", verifyURL, "", 0) // starts the cool-down
			}
			_, err := observedCall(t, tr, "GET", verifyURL, "", tc.deadline)
			if !errors.Is(err, spotflowhttp.ErrRateLimit) {
				t.Fatalf("err = %v, want a refusal", err)
			}
			refusals := only[refused](rec)
			if len(refusals) != 1 || refusals[0].Kind != tc.kind || refusals[0].Wait != tc.wait ||
				!errors.Is(refusals[0].Err, tc.err) || (tc.err == nil) != (refusals[0].Err == nil) {
				t.Errorf("refusals = %+v, want %s, wait %v, err %v", refusals, tc.kind, tc.wait, tc.err)
			}
			done := only[spotflowhttp.CallEvent](rec)
			last := done[len(done)-1]
			want := spotflowhttp.CallLocal
			if tc.err == context.DeadlineExceeded {
				want = spotflowhttp.CallDeadline
			}
			if last.Attempts != 0 || last.Outcome != want || last.Uncertain {
				t.Errorf("call done = %+v, want 0 attempts, %s, certain", last, want)
			}
		})
	}
}

// A 401 halts a transport built WithHaltOnEscalate: the observer hears of
// the halt, of each call then answered locally, and of Resume.
func TestObserverHaltAndResume(t *testing.T) {
	tr, rec, _ := observed(t, scripted(respond(401, body401), respond(200, `{}`)), spotflowhttp.WithHaltOnEscalate())
	observedCall(t, tr, "GET", verifyURL, "", 0)
	halts := only[spotflowhttp.HaltEvent](rec)
	if len(halts) != 1 || halts[0].StatusCode != 401 || halts[0].Code != "invalid_credentials" || halts[0].Path != "/api/v1/payments/verify" {
		t.Fatalf("halts = %+v, want one after the 401", halts)
	}
	if _, err := observedCall(t, tr, "GET", verifyURL, "", 0); !errors.Is(err, spotflowhttp.ErrAuthentication) {
		t.Fatalf("err = %v, want the halt's 401", err)
	}
	stops := only[spotflowhttp.StopEvent](rec)
	if len(stops) != 1 || stops[0].Reason != spotflowhttp.StopHalted || stops[0].Attempts != 0 {
		t.Errorf("stops = %+v, want one, halted, no attempt", stops)
	}
	done := only[spotflowhttp.CallEvent](rec)
	if len(done) != 2 || done[1].Outcome != spotflowhttp.CallLocal || done[1].Attempts != 0 ||
		done[1].Category != spotflowhttp.CategoryEscalate || done[0].Outcome != spotflowhttp.CallErrorResponse {
		t.Errorf("call done = %+v, want an error response, then a local canned", done)
	}
	tr.Resume()
	resumes := only[spotflowhttp.ResumeEvent](rec)
	if len(resumes) != 1 || resumes[0].Halts != 1 {
		t.Errorf("resumes = %+v, want one of one halt", resumes)
	}
	tr.Resume() // nothing to lift: not reported
	if n := len(only[spotflowhttp.ResumeEvent](rec)); n != 1 {
		t.Errorf("%d resumes reported, want 1", n)
	}
	if resp, err := observedCall(t, tr, "GET", verifyURL, "", 0); err != nil || resp.StatusCode != 200 {
		t.Errorf("after Resume: %v, %v", resp, err)
	}
}

// The hooks that predate Observer get the caller's context too, and
// WithOnEscalate is not called again for the calls a halt answers.
func TestHooksGetTheCallersContext(t *testing.T) {
	var retries, escalations int
	check := func(ctx context.Context, what string) {
		if ctx.Value(callerKey{}) != "caller" {
			t.Errorf("%s hook without the caller's context", what)
		}
	}
	tr := spotflowhttp.NewTransport(scripted(respond(503, body503), respond(401, body401)),
		spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithBackoff(constantBackoff(0)), spotflowhttp.WithHaltOnEscalate(),
		spotflowhttp.WithOnRetry(func(ctx context.Context, ev spotflowhttp.RetryEvent) { check(ctx, "retry"); retries++ }),
		spotflowhttp.WithOnEscalate(func(ctx context.Context, e *spotflowhttp.Error) {
			check(ctx, "escalate")
			escalations++
			if e.StatusCode != 401 || e.Attempts != 2 {
				t.Errorf("escalation = %v", e)
			}
		}))
	observedCall(t, tr, "GET", verifyURL, "", 0)
	observedCall(t, tr, "GET", verifyURL, "", 0) // halted
	if retries != 1 || escalations != 1 {
		t.Errorf("%d retries and %d escalations reported, want 1 and 1", retries, escalations)
	}
}

// contextRecorder is a slog.Handler that keeps the context of every record,
// as a trace-correlating handler would read it.
type contextRecorder struct {
	mu      sync.Mutex
	records []string
	without []string
}

func (h *contextRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *contextRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *contextRecorder) WithGroup(string) slog.Handler            { return h }
func (h *contextRecorder) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	line := r.Level.String() + " " + r.Message
	h.records = append(h.records, line)
	if ctx.Value(callerKey{}) != "caller" {
		h.without = append(h.without, line)
	}
	return nil
}

func TestLoggerGetsTheCallersContext(t *testing.T) {
	h := &contextRecorder{}
	tr := spotflowhttp.NewTransport(scripted(respond(503, body503), respond(401, body401)),
		spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithBackoff(constantBackoff(0)),
		spotflowhttp.WithMaxAttempts(2), spotflowhttp.WithHaltOnEscalate(), spotflowhttp.WithLogger(slog.New(h)))
	observedCall(t, tr, "GET", verifyURL, "", 0) // 503, retried, 401: escalate, halt
	tr2 := spotflowhttp.NewTransport(scripted(respond(503, body503)), spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithBackoff(constantBackoff(0)), spotflowhttp.WithMaxAttempts(2), spotflowhttp.WithLogger(slog.New(h)))
	observedCall(t, tr2, "GET", verifyURL, "", 0) // 503, retried, 503: retries stopped
	want := []string{
		"DEBUG spotflow: retry",
		"WARN spotflow: escalate",
		"WARN spotflow: halted after authentication failure; call Resume when the key is fixed",
		"DEBUG spotflow: retry",
		"DEBUG spotflow: retries stopped",
	}
	if strings.Join(h.records, "\n") != strings.Join(want, "\n") {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(h.records, "\n"), strings.Join(want, "\n"))
	}
	if len(h.without) > 0 {
		t.Errorf("records without the caller's context: %q", h.without)
	}
}

// Several observers all hear every event, in the order given, and a nil
// one is ignored.
func TestObserversCompose(t *testing.T) {
	var order []string
	mk := func(name string) *spotflowhttp.Observer {
		return &spotflowhttp.Observer{
			RetryScheduled: func(context.Context, spotflowhttp.RetryEvent) { order = append(order, name+" retry") },
			CallDone:       func(context.Context, spotflowhttp.CallEvent) { order = append(order, name+" done") },
		}
	}
	tr := spotflowhttp.NewTransport(scripted(respond(503, body503), respond(200, `{}`)),
		spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithBackoff(constantBackoff(0)),
		spotflowhttp.WithObserver(mk("a")), spotflowhttp.WithObserver(nil), spotflowhttp.WithObserver(mk("b")),
		spotflowhttp.WithOnRetry(func(context.Context, spotflowhttp.RetryEvent) { order = append(order, "hook retry") }))
	observedCall(t, tr, "GET", verifyURL, "", 0)
	if got := strings.Join(order, ", "); got != "a retry, b retry, hook retry, a done, b done" {
		t.Errorf("order: %s", got)
	}
}

// A call's observer may itself call through the same transport with the
// context it was given: that is a call of its own, not a retry of this one.
func TestObserverMayCallThroughTheTransport(t *testing.T) {
	var tr *spotflowhttp.Transport
	var inner []int
	obs := &spotflowhttp.Observer{CallDone: func(ctx context.Context, ev spotflowhttp.CallEvent) {
		if ev.Path != "/api/v1/payments/verify" {
			return // the inner call's own report
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.spotflow.co/api/v1/audit", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		inner = append(inner, spotflowhttp.AttemptsOf(resp))
	}}
	tr = spotflowhttp.NewTransport(scripted(respond(503, body503), respond(200, `{}`)), spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithBackoff(constantBackoff(0)), spotflowhttp.WithObserver(obs))
	resp, err := observedCall(t, tr, "GET", verifyURL, "", 0)
	if err != nil || spotflowhttp.AttemptsOf(resp) != 2 || len(inner) != 1 || inner[0] != 1 {
		t.Errorf("outer: %d attempts, %v; inner: %v", spotflowhttp.AttemptsOf(resp), err, inner)
	}
}

func TestAttemptsOf(t *testing.T) {
	tr := spotflowhttp.NewTransport(scripted(respond(503, body503), respond(503, body503), respond(201, `{}`)),
		spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithBackoff(constantBackoff(0)))
	resp, err := observedCall(t, tr, "POST", paymentsURL, `{"amount":1}`, 0)
	if err != nil || resp.StatusCode != 201 {
		t.Fatal(resp, err)
	}
	if n := spotflowhttp.AttemptsOf(resp); n != 3 {
		t.Errorf("after two 503s: AttemptsOf = %d, want 3", n)
	}
	resp, _ = observedCall(t, tr, "GET", verifyURL, "", 0)
	if n := spotflowhttp.AttemptsOf(resp); n != 1 {
		t.Errorf("at once: AttemptsOf = %d, want 1", n)
	}
	// A transport outside the stack may replace the body; the count stays.
	resp.Body = io.NopCloser(bytes.NewReader(nil))
	if n := spotflowhttp.AttemptsOf(resp); n != 1 {
		t.Errorf("wrapped: AttemptsOf = %d, want 1", n)
	}
	// A response the stack has no record of was sent once; one without a
	// request tells nothing.
	plain := &http.Response{StatusCode: 200, Request: mustRequest(t, "GET", verifyURL, "")}
	if n := spotflowhttp.AttemptsOf(plain); n != 1 {
		t.Errorf("not from the stack: AttemptsOf = %d, want 1", n)
	}
	if n := spotflowhttp.AttemptsOf(&http.Response{StatusCode: 200}); n != 0 {
		t.Errorf("no request: AttemptsOf = %d, want 0", n)
	}
	if n := spotflowhttp.AttemptsOf(nil); n != 0 {
		t.Errorf("nil: AttemptsOf = %d, want 0", n)
	}
}

// No event carries a header, the query or the body: the secret key and
// references never reach an observer.
func TestObserverSeesNoSecret(t *testing.T) {
	const secret = "sk_live_SECRET0123456789"
	tr, rec, _ := observed(t, scripted(respond(503, body503), respond(401, body401)), spotflowhttp.WithHaltOnEscalate())
	for i := 0; i < 2; i++ {
		req := mustRequest(t, "POST", paymentsURL+"?token=QUERYSECRET", `{"reference":"BODYSECRET"}`).WithContext(callerContext())
		req.Header.Set("Authorization", "Bearer "+secret)
		if resp, err := tr.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
	}
	rec.mu.Lock()
	all := fmt.Sprintf("%+v", rec.events)
	rec.mu.Unlock()
	for _, s := range []string{"SECRET", "sk_live", "token"} {
		if strings.Contains(all, s) {
			t.Errorf("%q reached an observer:\n%s", s, all)
		}
	}
}
