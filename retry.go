package spotflowhttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryTransport retries what Spotflow's policy says to retry
// (CategoryRetry) when the request is safe to repeat, with exponential
// backoff and jitter, Retry-After, the 30 s wait after server_error, the
// request's deadline and a retry budget. Everything else goes back after one
// attempt.
//
// A RetryTransport is safe for concurrent use by multiple goroutines; its
// retry budget is shared by all of them.
type RetryTransport struct {
	base   http.RoundTripper
	cfg    *config
	budget *retryBudget
}

var _ http.RoundTripper = (*RetryTransport)(nil)

// NewRetryTransport returns the retry layer alone on top of base (nil means
// http.DefaultTransport), for callers who compose the layers themselves.
func NewRetryTransport(base http.RoundTripper, opts ...Option) *RetryTransport {
	return newRetryTransport(base, newConfig(opts))
}

func newRetryTransport(base http.RoundTripper, cfg *config) *RetryTransport {
	return &RetryTransport{base: baseOrDefault(base), cfg: cfg, budget: newRetryBudget(cfg.retryBudget)}
}

// WithMaxAttempts sets how many times a call may be sent in total, the first
// attempt included [4]. Values below 1 mean 1.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(cfg *config) { cfg.maxAttempts = max(n, 1) })
}

// WithBackoff sets the factory of the backoff used between attempts. It is
// called once per call that needs a retry, because a backoff.BackOff such as
// *backoff.ExponentialBackOff is not safe for concurrent use. A BackOff that
// returns backoff.Stop ends the retries.
func WithBackoff(newBackOff func() backoff.BackOff) Option {
	return optionFunc(func(cfg *config) {
		if newBackOff != nil {
			cfg.newBackoff = newBackOff
		}
	})
}

// WithServerErrorDelay sets the least wait before retrying a response with
// code server_error [30 s, as Spotflow documents]. The backoff's wait is used
// where it is longer.
func WithServerErrorDelay(d time.Duration) Option {
	return optionFunc(func(cfg *config) { cfg.serverErrorDelay = max(d, 0) })
}

// WithMaxRetryAfter caps how long a request may be held back by the server
// [60 s]: a response whose Retry-After asks for longer goes back to the
// caller at once, and the rate limiter refuses a request that would wait
// longer for a cool-down.
func WithMaxRetryAfter(d time.Duration) Option {
	return optionFunc(func(cfg *config) { cfg.maxRetryAfter = max(d, 0) })
}

// WithRetryBudget sizes the retry budget, a token bucket shared by all calls
// through one transport, in the manner of the AWS SDK's retry quota: a fresh
// transport can make burst retries back to back [100]; each retry spends one,
// a call that succeeds at once earns a fifth of one back, and a call that
// succeeds after retrying gets its retries back. In a full outage that caps
// the extra traffic at burst requests instead of multiplying it; after
// recovery retries become available again. burst <= 0 disables the budget.
func WithRetryBudget(burst int) Option {
	return optionFunc(func(cfg *config) { cfg.retryBudget = burst })
}

// RetryEvent describes one retry, for WithOnRetry and
// Observer.RetryScheduled.
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
// A later WithOnRetry replaces fn; use [WithObserver] for several.
func WithOnRetry(fn func(context.Context, RetryEvent)) Option {
	return optionFunc(func(cfg *config) { cfg.onRetry = fn })
}

// RoundTrip implements http.RoundTripper.
func (t *RetryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c, r, owner := begin(req, t.cfg)
	resp, err := t.roundTrip(c, r)
	if owner {
		return t.cfg.finish(c, resp, err)
	}
	return resp, err
}

func (t *RetryTransport) roundTrip(c *call, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	c.budget = t.budget
	hasBody := req.Body != nil && req.Body != http.NoBody
	var bo backoff.BackOff
	// prev is the last failed response, held (its body usually already
	// read whole and closed) until the next attempt has an answer, so that
	// if the layers below refuse to send it, the caller still gets it.
	var prev *http.Response
	var prevErr *Error
	var prevConn error // the last attempt's connection error, likewise
	r := req
	for attempt := 1; ; attempt++ {
		c.attempts++
		resp, err := send(t.base, r)
		if attempt > 1 && err != nil && errors.As(err, new(*Error)) {
			// Refused below us: the retry never left. Keep the answer we had.
			t.budget.refund(1)
			if prev != nil {
				c.resp, c.err = prev, prevErr
				return prev, nil
			}
			if prevConn != nil {
				return nil, prevConn
			}
		}
		if prev != nil {
			discard(prev)
			prev = nil
		}
		prevConn = nil
		var e *Error // the failed attempt, nil for a success
		sent := true
		if err == nil {
			if resp.StatusCode < 400 && t.cfg.check == nil {
				t.budget.succeeded(attempt)
				c.resp, c.err = resp, nil
				return resp, nil
			}
			e = classifyResponse(t.cfg, resp)
			c.resp, c.err = resp, e
			if e == nil {
				t.budget.succeeded(attempt)
				return resp, nil
			}
			if e.Category != CategoryRetry {
				return resp, nil
			}
			c.maybeSent = c.maybeSent || e.Uncertain
			// A 429 says the request was refused, not processed: repeating
			// it is safe whatever the method.
			sent = resp.StatusCode != http.StatusTooManyRequests
		} else {
			if errors.As(err, new(*Error)) || ctx.Err() != nil {
				return nil, err // refused below us, or the caller gave up
			}
			var transient bool
			sent, transient = connErrorInfo(err)
			c.maybeSent = c.maybeSent || sent
			if !transient {
				return nil, err
			}
			e = &Error{Category: CategoryRetry, Uncertain: sent, Err: err, kind: ErrAPIConnection}
		}

		// Decide whether, and after how long, to send it again.
		if attempt >= t.cfg.maxAttempts ||
			hasBody && req.GetBody == nil ||
			sent && !t.repeatable(req) {
			return resp, err
		}
		if bo == nil {
			bo = t.cfg.newBackoff()
		}
		wait, ok := t.delay(e, bo)
		if !ok || !t.fitsDeadline(ctx, wait) || !t.budget.take() {
			return resp, err
		}
		next := req.WithContext(ctx)
		if hasBody {
			body, gerr := req.GetBody()
			if gerr != nil || body == nil {
				t.budget.refund(1)
				return resp, err
			}
			next.Body = body
		}
		t.retrying(c, req, attempt, wait, e)
		if resp != nil && !readWhole(resp) {
			// Its connection is still in use: let it go before waiting, or
			// the next attempt may wait for it (MaxConnsPerHost).
			discard(resp)
			resp = nil
		}
		if serr := t.cfg.clock.Sleep(ctx, wait); serr != nil {
			t.budget.refund(1)
			closeBody(next)
			if resp != nil {
				discard(resp)
			}
			w := *e
			w.Err = serr
			return nil, &w
		}
		prev, prevErr = resp, e
		if resp == nil {
			prevConn = err
		}
		r = next
	}
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

func (t *RetryTransport) retrying(c *call, req *http.Request, attempt int, wait time.Duration, e *Error) {
	if o := t.cfg.obs; o != nil && o.RetryScheduled != nil {
		ev := RetryEvent{RequestInfo: requestInfo(req), Reason: retryReason(e), Attempt: attempt, Wait: wait,
			StatusCode: e.StatusCode, Code: e.Code, Err: unwrapConn(e), IdempotencyKey: c.key}
		c.hook(func() { o.RetryScheduled(c.Context, ev) })
	}
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
	field := t.cfg.referenceField
	if field == "" {
		field = defaultReferenceField
	}
	return bodyReference(req, field) != ""
}

// connErrorInfo tells of an error from the base transport whether the
// request may have been sent, and whether trying again could help.
func connErrorInfo(err error) (sent, transient bool) {
	var (
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		alert   tls.AlertError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknown) || errors.As(err, &host) ||
		errors.As(err, &invalid) || errors.As(err, &alert) {
		return false, false // the handshake failed; it will fail again
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
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true, true
	}
	return true, false // unknown: assume the worst, do not repeat
}

// retryBudget is a token bucket of retries, counted in fifths of a retry so
// that a first-attempt success can earn a fraction back without floating
// point.
type retryBudget struct {
	tokens atomic.Int64
	max    int64
}

const retryCost = 5 // tokens per retry; a first-attempt success earns 1

func newRetryBudget(burst int) *retryBudget {
	if burst <= 0 {
		return nil
	}
	b := &retryBudget{max: int64(burst) * retryCost}
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
		if b.tokens.CompareAndSwap(n, n-retryCost) {
			return true
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
		if b.tokens.CompareAndSwap(cur, min(cur+n, b.max)) {
			return
		}
	}
}
