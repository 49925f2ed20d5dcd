package spotflowhttp

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
)

// Transport is the whole Spotflow error policy as one http.RoundTripper.
// Outermost first, its layers are: annotation (this type), idempotency keys
// (IdempotencyTransport), retry (RetryTransport), rate limiting
// (RateLimitTransport), then the base transport. So one key covers every
// attempt of a call, and every attempt, retries included, pays the limiter.
//
// A Transport is safe for concurrent use by multiple goroutines. Like any
// RoundTripper it returns err == nil whenever a response was obtained,
// whatever its status; ErrorOf tells what a response means. WithErrors
// changes that.
type Transport struct {
	next   http.RoundTripper
	cfg    *config
	halted atomic.Pointer[Error]
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns the full stack on top of base; a nil base means
// http.DefaultTransport. The integration is one line:
//
//	client.Transport = spotflowhttp.NewTransport(client.Transport)
func NewTransport(base http.RoundTripper, opts ...Option) *Transport {
	cfg := newConfig(opts)
	rl := newRateLimitTransport(base, cfg)
	rt := newRetryTransport(rl, cfg)
	it := newIdempotencyTransport(rt, cfg)
	return &Transport{next: it, cfg: cfg}
}

// WithErrors makes the outermost layer turn a final non-success response
// (other than treat-as-success) into a returned *Error, with the response
// body drained and closed, instead of returning the response. Callers that
// decode error bodies themselves, like generated OpenAPI clients, want the
// default.
func WithErrors() Option {
	return optionFunc(func(cfg *config) { cfg.returnErrors = true })
}

// WithOnEscalate calls fn once per call that ends in an escalate-category
// response (invalid_credentials, insufficient_balance, a 401 or 403): a
// human has to act. fn gets the call's context (see [Observer] for what it
// holds and how fn must behave) and runs before RoundTrip returns. A later
// WithOnEscalate replaces fn; use [WithObserver] for several.
func WithOnEscalate(fn func(context.Context, *Error)) Option {
	return optionFunc(func(cfg *config) { cfg.onEscalate = fn })
}

// WithHaltOnEscalate makes a Transport stop sending after an authentication
// failure (any 401): every later request is answered locally, without the
// network, with that *Error (Attempts 0) until Resume is called. A revoked
// key then costs one request, not one per call.
func WithHaltOnEscalate() Option {
	return optionFunc(func(cfg *config) { cfg.haltOnEscalate = true })
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if e := t.halted.Load(); e != nil {
		closeBody(req)
		h := *e
		h.Attempts, h.IdempotencyKey = 0, ""
		return nil, &h
	}
	c, r, owner := begin(req, t.cfg)
	resp, err := send(t.next, r)
	if !owner {
		return resp, err
	}
	resp, err = t.cfg.finish(c, resp, err)
	if t.cfg.haltOnEscalate {
		t.haltOn(c, err)
	}
	return resp, err
}

// Resume lifts a halt set by WithHaltOnEscalate, for instance once the API
// key has been rotated. It is safe to call at any time.
func (t *Transport) Resume() { t.halted.Store(nil) }

func (t *Transport) haltOn(c *call, err error) {
	e := c.err
	if e == nil {
		errors.As(err, &e)
	}
	if e != nil && e.StatusCode == http.StatusUnauthorized {
		h := *e
		t.halted.Store(&h)
		if o := t.cfg.obs; o != nil && o.Halted != nil {
			ev := HaltEvent{RequestInfo: requestInfo(c.req), StatusCode: e.StatusCode, Code: e.Code}
			c.hook(func() { o.Halted(c.Context, ev) })
		}
	}
}

// finish completes a call in its outermost layer: it annotates the final
// response or error and reports the call to the observer.
func (cfg *config) finish(c *call, resp *http.Response, err error) (*http.Response, error) {
	resp, err = cfg.annotate(c, resp, err)
	if o := cfg.obs; o != nil && o.CallDone != nil {
		cfg.callDone(c, resp, err)
	}
	return resp, err
}

// annotate annotates the final response or error of a call with attempts
// and key, and applies WithErrors.
func (cfg *config) annotate(c *call, resp *http.Response, err error) (*http.Response, error) {
	c.done = true
	if err != nil {
		if resp != nil { // a broken RoundTripper; the contract says ignore resp
			discard(resp)
		}
		e := asError(err)
		if e.Attempts == 0 {
			e.Attempts = c.attempts
			if !e.local {
				e.Attempts = max(e.Attempts, 1)
			}
		}
		// The call ended without an answer; if any attempt may have
		// reached Spotflow, so may the call have.
		e.Uncertain = e.Uncertain || c.maybeSent
		if e.IdempotencyKey == "" {
			e.IdempotencyKey = c.key
		}
		return nil, e
	}
	if resp.Request == nil || callOf(resp.Request) != c {
		resp.Request = c.req
	}
	if c.resp != resp {
		c.resp, c.err = resp, classifyResponse(cfg, resp)
	}
	e := c.err
	if e == nil {
		return resp, nil
	}
	e.Attempts = max(c.attempts, 1)
	e.IdempotencyKey = c.key
	// A final 429 or 4xx says nothing of an earlier attempt that may have
	// been processed.
	e.Uncertain = e.Uncertain || c.maybeSent
	if cfg.returnErrors && e.Category != CategoryTreatAsSuccess {
		discard(resp)
		return nil, e
	}
	return resp, nil
}

// asError turns an error from below into an *Error. Errors that are not
// already one are connection errors.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	sent, _ := connErrorInfo(err)
	return &Error{Category: CategoryRetry, Uncertain: sent, Err: err, kind: ErrAPIConnection}
}
