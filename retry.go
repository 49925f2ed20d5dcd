package spotflowhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryTransport retries what Spotflow's policy says to retry
// ([CategoryRetry]) when the request is safe to repeat, with exponential
// backoff and jitter, Retry-After, the 30 s wait after server_error, the
// request's deadline and a retry budget. Everything else goes back after one
// attempt.
//
// A RetryTransport is safe for concurrent use by multiple goroutines; its
// retry budget is kept per host and shared by all calls to that host.
type RetryTransport struct {
	base http.RoundTripper
	cfg  *config

	// rl is base when it is a rate-limit layer of the same stack, which
	// an attempt goes into directly: its RoundTrip would only check the
	// hosts again.
	rl *RateLimitTransport

	// netHTTP: the requests go to net/http's Transport, which reports in
	// a client trace every connection it gets for a request.
	netHTTP bool
}

var _ http.RoundTripper = (*RetryTransport)(nil)

// NewRetryTransport returns the retry layer alone on top of base (nil means
// [http.DefaultTransport]), for callers who compose the layers themselves.
func NewRetryTransport(base http.RoundTripper, opts ...Option) *RetryTransport {
	return newRetryTransport(base, newConfig(opts))
}

func newRetryTransport(base http.RoundTripper, cfg *config) *RetryTransport {
	base = baseOrDefault(base)
	below := base
	if rl, ok := below.(*RateLimitTransport); ok {
		below = rl.base
	}
	_, netHTTP := below.(*http.Transport)
	t := &RetryTransport{base: base, cfg: cfg, netHTTP: netHTTP}
	if rl, ok := base.(*RateLimitTransport); ok && rl.cfg == cfg {
		t.rl = rl
	}
	return t
}

// WithMaxAttempts sets how many times a call may be sent in total, the first
// attempt included. The default is 4 ([DefaultMaxAttempts]); 1 turns
// retries off. It panics if n is below 1. Only [RetryTransport] reads it.
func WithMaxAttempts(n int) Option {
	if n < 1 {
		invalid("WithMaxAttempts", "%d attempts; a call needs at least 1", n)
	}
	return optionFunc(func(cfg *config) { cfg.maxAttempts = n })
}

// WithBackoff sets the factory of the backoff used between attempts. It is
// called once per call that needs a retry, because a [backoff.BackOff] such
// as [*backoff.ExponentialBackOff] is not safe for concurrent use. A BackOff
// that returns [backoff.Stop] ends the retries. The default is exponential
// with jitter: 500 ms, doubling, ±50 %, at most 30 s; a nil newBackOff
// keeps it. Only [RetryTransport] reads it.
func WithBackoff(newBackOff func() backoff.BackOff) Option {
	return optionFunc(func(cfg *config) {
		if newBackOff != nil {
			cfg.newBackoff = newBackOff
		}
	})
}

// WithServerErrorDelay sets the least wait before retrying a response with
// code server_error. The default is 30 s, as Spotflow documents
// ([DefaultServerErrorDelay]). The backoff's wait is used where it is
// longer. It panics if d is negative. Only [RetryTransport] reads it.
func WithServerErrorDelay(d time.Duration) Option {
	mustNotBeNegative("WithServerErrorDelay", d)
	return optionFunc(func(cfg *config) { cfg.serverErrorDelay = d })
}

// WithMaxRetryAfter caps how long a request may be held back. The default
// is 60 s ([DefaultMaxRetryAfter]). [RetryTransport] returns a response
// whose Retry-After asks for longer to the caller at once.
// [RateLimitTransport] refuses, with an [*Error] matching [ErrRateLimit], a
// request that would wait longer for a cool-down or an X-RateLimit-Reset
// hold (counted over the whole of that wait), or longer for one token
// bucket; those waits are not added up, so a request may wait longer in
// all, and a [Limiter] of yours is bounded only by the context and its own
// rules. It panics if d is negative.
func WithMaxRetryAfter(d time.Duration) Option {
	mustNotBeNegative("WithMaxRetryAfter", d)
	return optionFunc(func(cfg *config) { cfg.maxRetryAfter = d })
}

// WithRetryBudget sizes the retry budget, a token bucket per host shared by
// all calls to that host through one transport, in the manner of the AWS
// SDK's retry quota: a fresh budget allows burst retries back to back; each
// retry spends one, a call that succeeds at once earns a fifth of one back,
// and a call that succeeds after retrying gets its retries back. In a full
// outage that caps the extra traffic at burst requests instead of
// multiplying it; after recovery retries become available again. The
// default is 100 ([DefaultRetryBudget]); 0 disables the budget. It panics if
// burst is negative. Only [RetryTransport] reads it.
func WithRetryBudget(burst int) Option {
	if burst < 0 {
		invalid("WithRetryBudget", "negative budget %d; 0 disables the budget", burst)
	}
	return optionFunc(func(cfg *config) { cfg.retryBudget = burst })
}

// RetryEvent describes one retry, for [WithOnRetry] and
// [Observer].RetryScheduled.
type RetryEvent struct {
	RequestInfo
	// Reason is the kind of failure that is retried.
	Reason RetryReason
	// Attempt is the number of the attempt that failed, 1 for the first.
	Attempt int
	// Wait is how long the transport waits before the next attempt.
	Wait time.Duration
	// StatusCode is the status of the failed attempt, 0 for a connection
	// error.
	StatusCode int
	// Code is Spotflow's error code in the failed response, if any.
	Code string
	// Err is the connection error of the failed attempt, nil if a
	// response was received.
	Err error
	// IdempotencyKey is the key the call carries, "" if none.
	IdempotencyKey string
}

// WithOnRetry calls fn exactly once per retry, before the wait, with the
// call's context (see [Observer] for what it holds and how fn must behave).
// A later WithOnRetry replaces fn; use [WithObserver] for several. Only
// [RetryTransport] reads it.
func WithOnRetry(fn func(context.Context, RetryEvent)) Option {
	return optionFunc(func(cfg *config) { cfg.onRetry = fn })
}

// RoundTrip implements [http.RoundTripper].
func (t *RetryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.cfg.covers(req) {
		return t.base.RoundTrip(req)
	}
	c, r, owner := begin(req, t.cfg)
	resp, err := t.roundTrip(c, r)
	if owner {
		return t.cfg.finish(c, resp, err)
	}
	return resp, err
}

// retrier is the state of one call's attempts in the retry layer.
type retrier struct {
	t       *RetryTransport
	c       *call
	req     *http.Request // the request as the layer got it
	ctx     context.Context
	budget  *retryBudget
	hasBody bool
	bo      backoff.BackOff

	// The last failed answer, held (its body usually already read whole
	// and closed) until the next attempt has one, so that if the layers
	// below refuse to send the retry, the caller still gets it.
	prev     *http.Response
	prevErr  *Error
	prevConn error
}

func (t *RetryTransport) roundTrip(c *call, req *http.Request) (*http.Response, error) {
	rt := retrier{t: t, c: c, req: req, ctx: req.Context(), hasBody: req.Body != nil && req.Body != http.NoBody}
	if c.key != "" && t.resendable(req) {
		c.traceResends()
	}
	r := req
	if err := rt.ctx.Err(); err != nil && c.first == nil {
		closeBody(r) // the caller gave up before anything was sent
		return nil, &Error{Category: CategoryRetry, Err: err, kind: ErrAPIConnection, local: true}
	}
	for attempt := 1; ; attempt++ {
		resp, err := rt.send(r)
		if attempt > 1 && isLocal(err) {
			// Refused below us: the retry never left. Keep the answer we had.
			if resp, kerr, ok := rt.keepPrevious(); ok {
				rt.refused(err)
				return resp, kerr
			}
		}
		rt.dropPrevious()
		e, sent := rt.judge(attempt, resp, err)
		if e != nil && e.unread {
			resp, err = nil, e // the response is gone with its body
			if cerr := rt.ctx.Err(); cerr != nil {
				rt.stop(stopReasonOf(cerr, StopCanceled), e, 0, cerr)
				return resp, err
			}
		}
		if e == nil {
			return resp, err
		}
		next, wait, ok := rt.admit(attempt, e, sent)
		if !ok {
			return resp, err
		}
		if o := t.cfg.obs; o != nil && o.RetryScheduled != nil {
			t.cfg.retrying(c, rt.req, attempt, wait, e)
		}
		if resp, err, ok := rt.wait(next, wait, resp, err, e); !ok {
			return resp, err
		}
		r = next
	}
}

// send sends one attempt and notes what net/http did with it.
func (rt *retrier) send(r *http.Request) (*http.Response, error) {
	c := rt.c
	c.attempts++
	x := c.x
	if x != nil {
		x.conns.Store(0)
	}
	var resp *http.Response
	var err error
	if rl := rt.t.rl; rl != nil {
		resp, err = rl.roundTrip(r)
	} else {
		resp, err = send(rt.t.base, r)
	}
	if x != nil {
		// Without a connection, nothing of the attempt left (a dial, a TLS
		// handshake or a wait for a free connection failed or was cut
		// short); only a base known to report connections tells.
		x.unsent = err != nil && x.trace.Load() != nil && rt.t.netHTTP && x.conns.Load() == 0
	}
	if c.resent(resp, err) {
		c.maybeSent = true
	}
	return resp, err
}

// resendable reports whether net/http itself may send req, a request of a
// call with a key, again on a dead keep-alive connection although its
// method is not idempotent: it does for a request with an Idempotency-Key
// or X-Idempotency-Key header.
//
// A call with a key carries it under the key header (the idempotency layer
// put it there if the caller had not): when that is one of those two
// names, the header need not be looked at.
func (t *RetryTransport) resendable(req *http.Request) bool {
	if !resendableMethod(req.Method) {
		return false
	}
	if h := t.cfg.keyHeader; h == IdempotencyKeyHeader || h == "X-Idempotency-Key" {
		return true
	}
	return headerKey(req.Header, "") != ""
}

// isLocal reports whether err is an answer made by a layer of this package
// without sending anything.
func isLocal(err error) bool {
	var e *Error
	return err != nil && errors.As(err, &e)
}

// keepPrevious returns the answer held from the previous attempt after the
// layers below refused to send the retry, and false if there is none.
func (rt *retrier) keepPrevious() (*http.Response, error, bool) {
	rt.budgetOf().refund(1)
	if rt.prev != nil {
		rt.c.resp, rt.c.err = rt.prev, rt.prevErr
		return rt.prev, nil, true
	}
	if rt.prevConn != nil {
		return nil, rt.prevConn, true
	}
	return nil, nil, false
}

func (rt *retrier) dropPrevious() {
	if rt.prev != nil {
		discard(rt.prev)
		rt.prev = nil
	}
	rt.prevConn = nil
}

// budgetOf is the retry budget of the call's host.
func (rt *retrier) budgetOf() *retryBudget {
	if rt.budget == nil {
		c, reg := rt.c, rt.t.cfg.scopes
		if c.scope != nil && c.scope.reg == reg {
			// The rate-limit layer below looked up this attempt's scope.
			rt.budget = c.scope.host.budget
		} else {
			rt.budget = c.scopeIn(reg, rt.req).host.budget
		}
	}
	return rt.budget
}

// succeeded refunds the budget after the call succeeded on its attempt-th
// attempt. A first attempt earns nothing while no budget has a retry spent
// (all are full), so the quiet path does not look the budget up then.
func (rt *retrier) succeeded(attempt int) {
	if attempt == 1 && rt.t.cfg.fusable() && rt.t.cfg.scopes.spent.Load() == 0 {
		return
	}
	rt.budgetOf().succeeded(attempt)
}

// judge tells what an attempt's answer means for the call: nil if it is
// final (a success, an answer not to retry, an error that cannot be
// helped), else the failure to retry and whether the request may have been
// processed.
func (rt *retrier) judge(attempt int, resp *http.Response, err error) (e *Error, sent bool) {
	c := rt.c
	if err != nil {
		if isLocal(err) || rt.ctx.Err() != nil {
			return nil, false // refused below us, or the caller gave up
		}
		sent, transient := connErrorInfo(err)
		sent = sent && !c.unsent()
		c.maybeSent = c.maybeSent || sent
		if !transient {
			rt.stop(StopPermanent, nil, 0, err)
			return nil, false
		}
		return &Error{Category: CategoryRetry, Uncertain: sent, Err: err, kind: ErrAPIConnection}, sent
	}
	if resp.StatusCode < 400 && rt.t.cfg.check == nil {
		rt.succeeded(attempt)
		c.resp, c.err = resp, nil
		return nil, false
	}
	e = classifyResponse(rt.t.cfg, resp)
	if e != nil && e.unread {
		c.resp, c.err, c.maybeSent = nil, nil, true
		return e, true
	}
	c.resp, c.err = resp, e
	if e == nil {
		rt.succeeded(attempt)
		return nil, false
	}
	if e.Category != CategoryRetry {
		return nil, false
	}
	c.maybeSent = c.maybeSent || e.Uncertain
	// A 429 says the request was refused, not processed: repeating it is
	// safe whatever the method.
	return e, resp.StatusCode != http.StatusTooManyRequests
}

// admit decides whether the failure e is retried, after how long, and with
// which request.
func (rt *retrier) admit(attempt int, e *Error, sent bool) (next *http.Request, wait time.Duration, ok bool) {
	t, req := rt.t, rt.req
	if attempt >= t.cfg.maxAttempts {
		return rt.stop(StopMaxAttempts, e, 0, nil)
	}
	if rt.hasBody && req.GetBody == nil || sent && !t.repeatable(req) {
		return rt.stop(StopNotRepeatable, e, 0, nil)
	}
	if rt.bo == nil {
		rt.bo = t.cfg.newBackoff()
	}
	wait, ok = t.delay(e, rt.bo)
	switch {
	case !ok && e.RetryAfter > t.cfg.maxRetryAfter:
		return rt.stop(StopRetryAfterOverCap, e, e.RetryAfter, nil)
	case !ok:
		return rt.stop(StopMaxAttempts, e, 0, nil) // the backoff said stop
	case !t.fitsDeadline(rt.ctx, wait):
		return rt.stop(StopDeadline, e, wait, nil)
	case !rt.budgetOf().take():
		return rt.stop(StopBudgetEmpty, e, 0, nil)
	}
	next = req.WithContext(rt.ctx)
	if rt.hasBody {
		body, err := req.GetBody()
		if err != nil || body == nil {
			rt.budgetOf().refund(1)
			return rt.stop(StopNotRepeatable, e, 0, err)
		}
		next.Body = body
	}
	return next, wait, true
}

// wait waits before sending next, holding the failed answer (resp, err) of
// the attempt before. It returns what the call answers if the wait is cut
// short, and false.
func (rt *retrier) wait(next *http.Request, wait time.Duration, resp *http.Response, err error, e *Error) (*http.Response, error, bool) {
	if resp != nil && !readWhole(resp) {
		// Its connection is still in use: let it go before waiting, or the
		// next attempt may wait for it (MaxConnsPerHost).
		discard(resp)
		resp = nil
	}
	if serr := rt.t.cfg.clock.Sleep(rt.ctx, wait); serr != nil {
		rt.stop(stopReasonOf(serr, StopCanceled), e, wait, serr)
		rt.budgetOf().refund(1)
		closeBody(next)
		if resp != nil {
			discard(resp)
		}
		w := *e
		w.Err = serr
		return nil, &w, false
	}
	rt.prev, rt.prevErr = resp, e
	if resp == nil {
		rt.prevConn = err
	}
	return nil, nil, true
}

// stop reports that the call stops retrying after the failed attempt e,
// for reason, and returns admit's answer for that.
func (rt *retrier) stop(reason StopReason, e *Error, wait time.Duration, err error) (*http.Request, time.Duration, bool) {
	if o := rt.t.cfg.obs; o != nil && o.RetriesStopped != nil {
		rt.t.cfg.stopped(rt.c, rt.req, reason, e, wait, err)
	}
	return nil, 0, false
}

// refused reports that the layers below refused to send a retry, with
// refusal, a local *Error.
func (rt *retrier) refused(refusal error) {
	var r *Error
	errors.As(refusal, &r)
	rt.stop(stopReasonOf(r.Err, StopRateLimited), rt.prevErr, r.RetryAfter, r.Err)
}

// delay is the wait before the next attempt after e, and false when e must
// not be retried: the backoff is exhausted, or the server asked for a wait
// above the cap.
func (t *RetryTransport) delay(e *Error, bo backoff.BackOff) (time.Duration, bool) {
	wait := bo.NextBackOff()
	if wait == backoff.Stop {
		return 0, false
	}
	if e.RetryAfter > 0 {
		if e.RetryAfter > t.cfg.maxRetryAfter {
			return 0, false
		}
		if e.StatusCode == http.StatusTooManyRequests {
			wait = e.RetryAfter // the server said when; sooner is futile, later is waste
		} else {
			wait = max(wait, e.RetryAfter)
		}
	}
	if strings.EqualFold(e.Code, codeServerError) {
		wait = max(wait, t.cfg.serverErrorDelay)
	}
	return wait, true
}

// fitsDeadline reports whether a wait of d ends before ctx's deadline, so
// that no wait is started that cannot be followed by an attempt.
func (t *RetryTransport) fitsDeadline(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || t.cfg.clock.Now().Add(d).Before(dl)
}

func unwrapConn(e *Error) error {
	if e.StatusCode == 0 {
		return e.Err
	}
	return nil
}

// repeatable reports whether req may be sent again although an earlier
// attempt may have reached Spotflow: methods idempotent by definition, and
// POST or PATCH with an idempotency key in a header or a non-empty reference
// in the JSON body, which is how Spotflow deduplicates creates.
func (t *RetryTransport) repeatable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete, http.MethodTrace:
		return true
	}
	if headerKey(req.Header, t.cfg.keyHeader) != "" {
		return true
	}
	field := t.cfg.referenceFieldOrDefault()
	return bodyReference(req, field) != ""
}

// connErrorInfo tells of an error from the base transport whether the
// request may have been sent, and whether trying again could help.
func connErrorInfo(err error) (sent, transient bool) {
	if handshakeFailed(err) || refusedByNetHTTP(err) {
		return false, false // it will fail again
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return false, !dnsErr.IsNotFound || dnsErr.IsTemporary
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) {
		return false, true
	}
	var recErr tls.RecordHeaderError
	if errors.As(err, &recErr) {
		return false, true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true, false
	}
	if sent, ok := http2ErrorInfo(err); ok {
		return sent, true
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true, true
	}
	return true, false // unknown: assume the worst, do not repeat
}

// handshakeFailed reports whether err is a TLS handshake's refusal: a
// certificate not trusted, or an alert from the server.
func handshakeFailed(err error) bool {
	var (
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		alert   tls.AlertError
	)
	return errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &alert)
}

// refusedByNetHTTP reports whether err is http.Transport's refusal of a
// request it found invalid before sending anything. The errors are not
// typed, so their messages (the same in Go 1.25 and 1.26) are read.
func refusedByNetHTTP(err error) bool {
	switch msg := err.Error(); msg {
	case "http: nil Request.URL", "http: nil Request.Header", "http: no Host in request URL":
		return true
	default:
		return strings.HasPrefix(msg, "net/http: invalid header ") || strings.HasPrefix(msg, "net/http: invalid trailer ") ||
			strings.HasPrefix(msg, "net/http: invalid method ") || strings.HasPrefix(msg, "unsupported protocol scheme ")
	}
}

// http2ErrorInfo tells of an error from net/http's HTTP/2 client whether the
// request may have been processed, and false if err is not one. The error
// types are unexported, so their messages, stable for years, are read:
//   - a stream the server refused (REFUSED_STREAM), or one above a GOAWAY's
//     last stream id, was never processed;
//   - a stream reset after the request was written (a handler's panic gives
//     INTERNAL_ERROR), a GOAWAY followed by a close (the stream is at or below
//     the GOAWAY's last stream id, or net/http would have sent it again
//     itself), or a connection lost may have been.
func http2ErrorInfo(err error) (sent, ok bool) {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "stream error: stream ID ") && strings.Contains(msg, "; REFUSED_STREAM"):
		return false, true
	case strings.Contains(msg, "stream error: stream ID "),
		strings.Contains(msg, "http2: server sent GOAWAY and closed the connection"),
		strings.Contains(msg, "http2: client connection lost"),
		strings.Contains(msg, "http2: client connection force closed"):
		return true, true
	case strings.Contains(msg, "http2: Transport received Server's graceful shutdown GOAWAY"),
		strings.Contains(msg, "http2: Transport received GOAWAY from server ErrCode:"):
		return false, true // above the last stream id: never taken
	}
	return false, false
}

// retryBudget is a token bucket of retries, counted in fifths of a retry so
// that a first-attempt success can earn a fraction back without floating
// point.
type retryBudget struct {
	tokens atomic.Int64
	max    int64
	spent  *atomic.Int64 // the registry's count of budgets not full
}

const retryCost = 5 // tokens per retry; a first-attempt success earns 1

func newRetryBudget(burst int, spent *atomic.Int64) *retryBudget {
	if burst <= 0 {
		return nil
	}
	b := &retryBudget{max: min(int64(burst), math.MaxInt64/retryCost) * retryCost, spent: spent}
	b.tokens.Store(b.max)
	return b
}

// take spends one retry, or reports that none is left.
func (b *retryBudget) take() bool {
	if b == nil {
		return true
	}
	for {
		n := b.tokens.Load()
		if n < retryCost {
			return false
		}
		if n == b.max {
			b.spent.Add(1) // before, so that the count is never short
		}
		if b.tokens.CompareAndSwap(n, n-retryCost) {
			return true
		}
		if n == b.max {
			b.spent.Add(-1)
		}
	}
}

// succeeded refunds after a call succeeded on its attempt-th attempt.
func (b *retryBudget) succeeded(attempt int) {
	if attempt > 1 {
		b.refund(attempt - 1)
		return
	}
	b.add(1)
}

// full reports whether no retry is spent (a disabled budget is always full).
func (b *retryBudget) full() bool { return b == nil || b.tokens.Load() >= b.max }

// available is how many retries b has left, -1 for no budget.
func (b *retryBudget) available() float64 {
	if b == nil {
		return -1
	}
	return float64(b.tokens.Load()) / retryCost
}

func (b *retryBudget) refund(retries int) { b.add(int64(retries) * retryCost) }

func (b *retryBudget) add(n int64) {
	if b == nil {
		return
	}
	for {
		cur := b.tokens.Load()
		if cur >= b.max {
			return
		}
		if next := min(cur+n, b.max); b.tokens.CompareAndSwap(cur, next) {
			if next == b.max {
				b.spent.Add(-1)
			}
			return
		}
	}
}
