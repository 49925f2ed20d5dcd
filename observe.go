package spotflowhttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Observer sees what the stack does with each call, for metrics, traces and
// logs: every attempt sent, every retry and why, why retries stopped, every
// rate-limit wait and refusal, cool-downs, halts, and how each call ended.
// Give it with [WithObserver]; the otelspotflow module builds one that
// records OpenTelemetry metrics.
//
// Observer is a struct of optional funcs, like [httptrace.ClientTrace],
// rather than an interface: a program sets only the events it wants, a nil
// field costs nothing, and an event added later is a new field, so no
// observer written today stops compiling.
//
// Each func gets the context of the call (the context of the request the
// caller gave the stack, with its values, such as the span otelhttp put
// there) and an event naming the request by method, host and path. No event
// carries headers, the query or the body, so no secret key reaches an
// observer; a path may carry ids, so use Path in logs, not as a metric label.
//
// The funcs run synchronously on the goroutine of the call, before the step
// they report goes on, so they should return quickly; funcs of different
// calls run concurrently, so they must be safe for concurrent use. A request
// a func makes with the context it is given is a call of its own. Errors in
// events are read-only.
type Observer struct {
	// AttemptSent is called when an attempt is handed to the base
	// transport, after the rate limiter let it go. The rate-limit layer
	// reports it, so a stack composed by hand without a
	// [RateLimitTransport] reports no attempts.
	AttemptSent func(context.Context, AttemptEvent)
	// RetryScheduled is called once per retry, before the wait that
	// precedes it; it is what [WithOnRetry] gets.
	RetryScheduled func(context.Context, RetryEvent)
	// RetriesStopped is called when an attempt failed in a way Spotflow's
	// policy retries ([CategoryRetry]) but the call will not try again,
	// with the reason, and for a call a halt answers without sending it.
	RetriesStopped func(context.Context, StopEvent)
	// RateLimitWaited is called after a request was held back by the rate
	// limiter, with how long and why. A request that needed no wait is not
	// reported, except by a [Limiter] of yours ([WithLimiter],
	// [WithLimiterFunc]), whose every Wait is, with the time it took on
	// the transport's clock.
	RateLimitWaited func(context.Context, WaitEvent)
	// RateLimitRefused is called when the rate limiter refused to send a
	// request: its wait would have passed the cap ([WithMaxRetryAfter]) or
	// the context's deadline, the context ended during the wait, or a
	// [Limiter] of yours failed.
	RateLimitRefused func(context.Context, WaitEvent)
	// CoolDownStarted is called when a response starts or extends a pause
	// of the requests with its host and credential: a 429 with
	// Retry-After, or X-RateLimit-Remaining 0 until X-RateLimit-Reset.
	CoolDownStarted func(context.Context, CoolDownEvent)
	// Halted is called when a 401 halts the requests with its host and
	// credential ([WithHaltOnEscalate]).
	Halted func(context.Context, HaltEvent)
	// Resumed is called when [Transport.Resume] lifts halts (not when
	// there was none). Its context is context.Background(): Resume belongs
	// to no call.
	Resumed func(context.Context, ResumeEvent)
	// CallDone is called once per call, when the outermost layer of the
	// stack returns, whatever the outcome: a success, a final error
	// response, a connection error, or an answer made locally.
	CallDone func(context.Context, CallEvent)
}

// WithObserver has the stack report to o; see [Observer]. Observers given
// in several WithObserver options are all called, in the order given, then
// the hooks ([WithOnRetry], [WithOnEscalate]) and the logger
// ([WithLogger]). A nil o is ignored. The fields of o are read when the
// option is applied. Every layer reads it, each reporting what it does.
func WithObserver(o *Observer) Option {
	return optionFunc(func(cfg *config) {
		if o != nil {
			cfg.observers = append(cfg.observers, *o)
		}
	})
}

// RequestInfo names the request an event is about. It holds no header, no
// query and no body.
type RequestInfo struct {
	// Method is the request's method, "GET" for "".
	Method string
	// Host is the request's URL.Host as sent: host or host:port.
	Host string
	// Path is the request's URL.Path. It may hold ids and references:
	// log it, but do not use it as a metric label.
	Path string
}

func requestInfo(req *http.Request) RequestInfo {
	m := req.Method
	if m == "" {
		m = http.MethodGet
	}
	return RequestInfo{Method: m, Host: req.URL.Host, Path: req.URL.Path}
}

// AttemptEvent reports an attempt handed to the base transport, for
// Observer.AttemptSent.
type AttemptEvent struct {
	RequestInfo
	// Attempt is the number of the attempt in its call, 1 for the first.
	Attempt int
	// IdempotencyKey is the key the call carries, "" if none.
	IdempotencyKey string
}

// RetryReason is why an attempt is retried: the kind of failure it had.
// The values are few and fixed, fit for a metric label.
type RetryReason string

// The reasons of [RetryEvent].
const (
	// RetryRateLimited: a 429, or the code rate_limit_exceeded.
	RetryRateLimited RetryReason = "rate_limited"
	// RetryServerError: a 500, 502, 503 or 504, or the code server_error.
	RetryServerError RetryReason = "server_error"
	// RetryConnection: no response, a connection error that may go away.
	RetryConnection RetryReason = "connection"
	// RetryCode: another code that WithCodeCategory makes CategoryRetry.
	RetryCode RetryReason = "code"
)

// retryReason is the reason to retry after e, an *Error of CategoryRetry.
func retryReason(e *Error) RetryReason {
	switch {
	case e.StatusCode == 0:
		return RetryConnection
	case e.StatusCode == http.StatusTooManyRequests || strings.EqualFold(e.Code, codeRateLimitExceeded):
		return RetryRateLimited
	case e.StatusCode >= 500 || strings.EqualFold(e.Code, codeServerError):
		return RetryServerError
	}
	return RetryCode
}

// StopReason is why a call stopped retrying a failure Spotflow's policy
// retries. The values are few and fixed, fit for a metric label.
type StopReason string

// The reasons of [StopEvent].
const (
	// StopMaxAttempts: the attempts are used up (WithMaxAttempts), or the
	// backoff (WithBackoff) said stop.
	StopMaxAttempts StopReason = "max_attempts"
	// StopBudgetEmpty: the retry budget (WithRetryBudget) has no retry
	// left, as in an outage.
	StopBudgetEmpty StopReason = "budget_empty"
	// StopDeadline: the wait before the next attempt would end after the
	// context's deadline, or the deadline passed during it.
	StopDeadline StopReason = "deadline"
	// StopCanceled: the context was canceled during the wait.
	StopCanceled StopReason = "canceled"
	// StopNotRepeatable: the request may have reached Spotflow and is not
	// safe to send again (a POST without idempotency key or reference), or
	// its body cannot be sent again (no GetBody, or GetBody failed).
	StopNotRepeatable StopReason = "not_repeatable"
	// StopRetryAfterOverCap: the response asked for a wait (Retry-After)
	// longer than the cap, WithMaxRetryAfter.
	StopRetryAfterOverCap StopReason = "retry_after_over_cap"
	// StopRateLimited: the rate limiter refused to send the retry, its
	// wait being over the cap (see [Observer.RateLimitRefused]).
	StopRateLimited StopReason = "rate_limited"
	// StopPermanent: a connection error that repeating cannot fix, such as
	// a certificate the client does not trust, or a host that does not
	// exist.
	StopPermanent StopReason = "permanent"
	// StopHalted: the call's host and credential are halted after a 401
	// ([WithHaltOnEscalate]), so the call was answered without the network.
	StopHalted StopReason = "halted"
)

// stopReasonOf is the reason matching a wait that ended with err, or a
// limiter's refusal with err: deadline, canceled, or other.
func stopReasonOf(err error, other StopReason) StopReason {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return StopDeadline
	case errors.Is(err, context.Canceled):
		return StopCanceled
	}
	return other
}

// StopEvent reports why a call will not retry, for Observer.RetriesStopped.
type StopEvent struct {
	RequestInfo
	// Reason is why the retries stopped.
	Reason StopReason
	// Attempts is how many attempts the call sent.
	Attempts int
	// StatusCode is the status of the last failed attempt, 0 for a
	// connection error or none.
	StatusCode int
	// Code is Spotflow's error code in the last failed response, if any.
	Code string
	// Wait is the wait that was not made, when the reason is about one
	// (deadline, retry_after_over_cap, rate_limited); else 0.
	Wait time.Duration
	// Err is the connection or context error, if any.
	Err error
	// IdempotencyKey is the key the call carries, "" if none.
	IdempotencyKey string
}

// RateLimitKind is what held a request back. The values are few and fixed,
// fit for a metric label.
type RateLimitKind string

// The kinds of [WaitEvent] and [CoolDownEvent].
const (
	// RateLimitCoolDown: a 429's Retry-After.
	RateLimitCoolDown RateLimitKind = "cool_down"
	// RateLimitHold: X-RateLimit-Remaining 0, until X-RateLimit-Reset.
	RateLimitHold RateLimitKind = "ratelimit_hold"
	// RateLimitTokenBucket: a token bucket (WithRateLimit, the presets,
	// WithRateLimitByKey, or WithLimiter with a *rate.Limiter).
	RateLimitTokenBucket RateLimitKind = "token_bucket"
	// RateLimitAdaptive: the adaptive rate (WithAdaptiveRateLimit).
	RateLimitAdaptive RateLimitKind = "adaptive"
	// RateLimitLimiter: a Limiter of yours (WithLimiter).
	RateLimitLimiter RateLimitKind = "limiter"
)

// WaitEvent reports a request held back, or refused, by the rate limiter,
// for Observer.RateLimitWaited and Observer.RateLimitRefused.
type WaitEvent struct {
	RequestInfo
	// Kind is what held the request back.
	Kind RateLimitKind
	// Wait is how long the request waited; for a refusal, how long it
	// would have had to wait (0 if unknown, as for a Limiter of yours).
	Wait time.Duration
	// Err is, for a refusal, why: context.DeadlineExceeded if the wait
	// would pass the deadline, the context's error if it ended during the
	// wait, the Limiter's error, or nil if the wait was over the cap. It is
	// nil for a wait.
	Err error
}

// CoolDownEvent reports a pause of the requests of a scope, started or
// extended by a response, for Observer.CoolDownStarted.
type CoolDownEvent struct {
	// RequestInfo is the request whose response asked for the pause.
	RequestInfo
	// Kind is RateLimitCoolDown or RateLimitHold.
	Kind RateLimitKind
	// Until is when requests may be sent again.
	Until time.Time
	// Wait is the time from the response to Until.
	Wait time.Duration
	// StatusCode is the status of the response.
	StatusCode int
}

// HaltEvent reports that a 401 halted the requests with its host and
// credential, for Observer.Halted.
type HaltEvent struct {
	// RequestInfo is the request that got the failure.
	RequestInfo
	// StatusCode is the failure's status, 401.
	StatusCode int
	// Code is Spotflow's error code, such as invalid_credentials.
	Code string
}

// ResumeEvent reports that [Transport.Resume] lifted halts, for
// Observer.Resumed.
type ResumeEvent struct {
	// Halts is how many halts were lifted: one per host and credential
	// that had got a 401.
	Halts int
}

// CallOutcome is how a call ended. The values are few and fixed, fit for a
// metric label.
type CallOutcome string

// The outcomes of [CallEvent].
const (
	// CallSuccess: a response that is not an error (2xx, 3xx), or the
	// existing resource fetched for a duplicate (ReplayOf).
	CallSuccess CallOutcome = "success"
	// CallErrorResponse: a final error response (4xx, 5xx).
	CallErrorResponse CallOutcome = "error_response"
	// CallConnectionError: no response; the network failed.
	CallConnectionError CallOutcome = "connection_error"
	// CallDeadline: the context's deadline passed before an answer.
	CallDeadline CallOutcome = "deadline"
	// CallCanceled: the context was canceled before an answer.
	CallCanceled CallOutcome = "canceled"
	// CallLocal: answered by the stack without the network: a halted
	// transport, a refused rate-limit wait, a failed key function.
	CallLocal CallOutcome = "local"
)

// CallEvent reports how a call ended, for Observer.CallDone.
type CallEvent struct {
	RequestInfo
	// Attempts is how many times the request was sent, retries included;
	// 0 if it never was.
	Attempts int
	// Outcome is how the call ended.
	Outcome CallOutcome
	// Category is Spotflow's recovery category of the final answer,
	// CategoryNone for a success.
	Category Category
	// StatusCode is the final response's status, 0 if none.
	StatusCode int
	// Uncertain reports that the call may have taken effect although no
	// success was seen; see Error.Uncertain.
	Uncertain bool
	// Duration is how long the call took, waits included, on the
	// transport's clock.
	Duration time.Duration
	// Error is the call's *Error, as ErrorOf or RoundTrip give it; nil
	// for a success. Read-only.
	Error *Error
	// IdempotencyKey is the key the call carried, "" if none.
	IdempotencyKey string
	// RetryBudget is how many retries the retry budget of the call's host
	// had left when the call ended (fifths count: a success earns 0.2), or
	// -1 when there is none (WithRetryBudget(0), no retry layer, or a call
	// answered before the retry layer).
	RetryBudget float64
}

// outcomeOf tells how a call ended that the stack answered with e (nil for
// a success), and with a response or not. A halted transport's answer is
// CallLocal, which its caller knows.
func outcomeOf(e *Error, hasResponse bool) CallOutcome {
	switch {
	case e == nil:
		return CallSuccess
	case hasResponse:
		return CallErrorResponse
	case errors.Is(e.Err, context.DeadlineExceeded):
		return CallDeadline
	case errors.Is(e.Err, context.Canceled):
		return CallCanceled
	case e.local:
		return CallLocal
	case e.StatusCode != 0:
		return CallErrorResponse // WithErrors: returned as an error
	}
	return CallConnectionError
}

// AttemptsOf returns how many times the call that produced resp was sent,
// retries included: 1 for a call that succeeded at once, 3 for one that
// succeeded on its third attempt. Unlike [ErrorOf], it answers for
// successes too. It works on responses whose body another transport has
// wrapped. A response the stack holds no record of, such as a success to
// the first attempt of a call [NewTransport] sent unchanged (which it does
// not copy to annotate), or one that did not come through this package's
// layers, counts 1: its request was sent once. It returns 0 for nil and for
// a response without a request.
func AttemptsOf(resp *http.Response) int {
	if resp == nil || resp.Request == nil {
		return 0
	}
	c := callOf(resp.Request)
	if c == nil {
		return 1
	}
	return max(int(c.attempts), 1) // a response was obtained, so something was sent
}

// observer composes the observers a config was given, the hooks
// (WithOnRetry, WithOnEscalate) and the logger (WithLogger) into one, or nil
// when there is nothing to call, so that the layers pay one nil check when
// nothing observes them.
func (cfg *config) observer() *Observer {
	all := cfg.observers
	if cfg.onRetry != nil || cfg.onEscalate != nil {
		all = append(all, hooksObserver(cfg.onRetry, cfg.onEscalate))
	}
	if cfg.logger != nil {
		all = append(all, logObserver(cfg.logger))
	}
	if len(all) == 0 {
		return nil
	}
	var o Observer
	for _, p := range all {
		o.AttemptSent = chain(o.AttemptSent, p.AttemptSent)
		o.RetryScheduled = chain(o.RetryScheduled, p.RetryScheduled)
		o.RetriesStopped = chain(o.RetriesStopped, p.RetriesStopped)
		o.RateLimitWaited = chain(o.RateLimitWaited, p.RateLimitWaited)
		o.RateLimitRefused = chain(o.RateLimitRefused, p.RateLimitRefused)
		o.CoolDownStarted = chain(o.CoolDownStarted, p.CoolDownStarted)
		o.Halted = chain(o.Halted, p.Halted)
		o.Resumed = chain(o.Resumed, p.Resumed)
		o.CallDone = chain(o.CallDone, p.CallDone)
	}
	return &o
}

// chain calls a, then b; either may be nil.
func chain[E any](a, b func(context.Context, E)) func(context.Context, E) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(ctx context.Context, e E) {
		a(ctx, e)
		b(ctx, e)
	}
}

// hooksObserver is WithOnRetry and WithOnEscalate as an Observer.
func hooksObserver(onRetry func(context.Context, RetryEvent), onEscalate func(context.Context, *Error)) Observer {
	o := Observer{RetryScheduled: onRetry}
	if onEscalate != nil {
		o.CallDone = func(ctx context.Context, ev CallEvent) {
			// A call answered by a halted transport got no response: the
			// escalation was reported for the call that caused the halt.
			if ev.Category == CategoryEscalate && ev.Attempts > 0 {
				onEscalate(ctx, ev.Error)
			}
		}
	}
	return o
}

// logObserver is WithLogger as an Observer: retries and their end at Debug,
// escalations and halts at Warn, each with the call's context so that a
// handler can add the trace it belongs to.
func logObserver(l *slog.Logger) Observer {
	return Observer{
		RetryScheduled: func(ctx context.Context, ev RetryEvent) {
			if l.Enabled(ctx, slog.LevelDebug) {
				l.DebugContext(ctx, "spotflow: retry", "method", ev.Method, "path", ev.Path,
					"attempt", ev.Attempt, "reason", ev.Reason, "wait", ev.Wait, "status", ev.StatusCode,
					"code", ev.Code, "key", ev.IdempotencyKey, "error", ev.Err)
			}
		},
		RetriesStopped: func(ctx context.Context, ev StopEvent) {
			if l.Enabled(ctx, slog.LevelDebug) {
				l.DebugContext(ctx, "spotflow: retries stopped", "method", ev.Method, "path", ev.Path,
					"reason", ev.Reason, "attempts", ev.Attempts, "status", ev.StatusCode, "code", ev.Code,
					"key", ev.IdempotencyKey, "error", ev.Err)
			}
		},
		CallDone: func(ctx context.Context, ev CallEvent) {
			if ev.Category == CategoryEscalate && ev.Attempts > 0 {
				l.WarnContext(ctx, "spotflow: escalate", "method", ev.Method, "path", ev.Path,
					"status", ev.StatusCode, "code", ev.Error.Code, "key", ev.IdempotencyKey)
			}
		},
		Halted: func(ctx context.Context, ev HaltEvent) {
			l.WarnContext(ctx, "spotflow: halted after authentication failure; call Resume when the key is fixed",
				"host", ev.Host, "status", ev.StatusCode, "code", ev.Code)
		},
	}
}

// callDone reports a call the stack has finished with resp or err, as the
// caller gets them.
func (cfg *config) callDone(c *call, resp *http.Response, err error) {
	ev := CallEvent{
		RequestInfo:    requestInfo(c.req),
		IdempotencyKey: c.key,
		RetryBudget:    -1,
	}
	if c.x != nil { // begin times every call of a config that reports durations
		ev.Duration = cfg.clock.Now().Sub(c.x.start)
	}
	if c.scope != nil {
		ev.RetryBudget = c.scope.host.budget.available()
	}
	if err != nil {
		ev.Error, _ = err.(*Error) // annotate returns nothing else
	} else if c.resp == resp {
		ev.Error = c.err
	}
	if e := ev.Error; e != nil {
		ev.Attempts, ev.Category, ev.StatusCode, ev.Uncertain = e.Attempts, e.Category, e.StatusCode, e.Uncertain
	} else {
		ev.Attempts = max(int(c.attempts), 1)
	}
	ev.Outcome = outcomeOf(ev.Error, resp != nil)
	if resp != nil {
		ev.StatusCode = resp.StatusCode
	}
	o := cfg.obs
	c.hook(func() { o.CallDone(c.Context, ev) })
}

// eventContext is the call req belongs to (nil for a layer used alone) and
// the context to report its events with: the caller's.
func eventContext(req *http.Request) (*call, context.Context) {
	c := callOf(req)
	if c == nil {
		return nil, req.Context()
	}
	return c, c.Context
}

// attemptSent reports req handed to the base transport.
func (cfg *config) attemptSent(req *http.Request) {
	c, ctx := eventContext(req)
	ev := AttemptEvent{RequestInfo: requestInfo(req), Attempt: 1}
	if c != nil {
		ev.Attempt, ev.IdempotencyKey = max(int(c.attempts), 1), c.key
	}
	o := cfg.obs
	c.hook(func() { o.AttemptSent(ctx, ev) })
}

// retrying reports the retry of a call after the failed attempt e.
func (cfg *config) retrying(c *call, req *http.Request, attempt int, wait time.Duration, e *Error) {
	ev := RetryEvent{RequestInfo: requestInfo(req), Reason: retryReason(e), Attempt: attempt, Wait: wait,
		StatusCode: e.StatusCode, Code: e.Code, Err: unwrapConn(e), IdempotencyKey: c.key}
	o := cfg.obs
	c.hook(func() { o.RetryScheduled(c.Context, ev) })
}

// stopped reports that a call will not retry after the failed attempt e
// (nil if there was none), for reason. wait is the wait that was not made;
// err, if not nil, says more than e.
func (cfg *config) stopped(c *call, req *http.Request, reason StopReason, e *Error, wait time.Duration, err error) {
	ev := StopEvent{RequestInfo: requestInfo(req), Reason: reason, Attempts: int(c.attempts), Wait: wait, Err: err,
		IdempotencyKey: c.key}
	if e != nil {
		ev.StatusCode, ev.Code = e.StatusCode, e.Code
		if ev.Err == nil {
			ev.Err = unwrapConn(e)
		}
	}
	o := cfg.obs
	c.hook(func() { o.RetriesStopped(c.Context, ev) })
}

// rateLimitWaited reports req held back for d by kind.
func (cfg *config) rateLimitWaited(req *http.Request, kind RateLimitKind, d time.Duration) {
	c, ctx := eventContext(req)
	ev := WaitEvent{RequestInfo: requestInfo(req), Kind: kind, Wait: d}
	o := cfg.obs
	c.hook(func() { o.RateLimitWaited(ctx, ev) })
}

// rateLimitRefused reports req refused by kind, which would have held it
// back for d, because of err (nil: over the cap).
func (cfg *config) rateLimitRefused(req *http.Request, kind RateLimitKind, d time.Duration, err error) {
	c, ctx := eventContext(req)
	ev := WaitEvent{RequestInfo: requestInfo(req), Kind: kind, Wait: d, Err: err}
	o := cfg.obs
	c.hook(func() { o.RateLimitRefused(ctx, ev) })
}

// coolDownStarted reports a pause of kind until until, asked for at now by
// resp, the answer to req.
func (cfg *config) coolDownStarted(req *http.Request, kind RateLimitKind, now, until time.Time, resp *http.Response) {
	c, ctx := eventContext(req)
	ev := CoolDownEvent{RequestInfo: requestInfo(req), Kind: kind, Until: until, Wait: until.Sub(now), StatusCode: resp.StatusCode}
	o := cfg.obs
	c.hook(func() { o.CoolDownStarted(ctx, ev) })
}

// halted reports that the 401 e to req, a request of c, halted its
// credential.
func (cfg *config) halted(c *call, req *http.Request, e *Error) {
	ev := HaltEvent{RequestInfo: requestInfo(req), StatusCode: e.StatusCode, Code: e.Code}
	o := cfg.obs
	c.hook(func() { o.Halted(c.Context, ev) })
}

// refusedByHalt reports a call answered locally with h because its
// credential is halted: its retries stop before the first attempt, and it
// is done.
func (cfg *config) refusedByHalt(c *call, h *Error) {
	if cfg.obs.RetriesStopped != nil {
		cfg.stopped(c, c.req, StopHalted, h, 0, nil)
	}
	if cfg.obs.CallDone != nil {
		cfg.callDone(c, nil, h)
	}
}

// resumed reports that Resume lifted n halts.
func (cfg *config) resumed(n int) {
	if n > 0 {
		cfg.obs.Resumed(context.Background(), ResumeEvent{Halts: n})
	}
}
