package spotflowhttp

import (
	"context"
	"errors"
	"net/http"
)

// Transport is the whole Spotflow error policy as one [http.RoundTripper].
// Outermost first, its layers are: annotation (this type), idempotency keys
// ([IdempotencyTransport]), retry ([RetryTransport]), rate limiting
// ([RateLimitTransport]), then the base transport. So one key covers every
// attempt of a call, and every attempt, retries included, pays the limiter.
//
// A Transport is safe for concurrent use by multiple goroutines. Like any
// RoundTripper it returns err == nil whenever a response was obtained,
// whatever its status; [ErrorOf] tells what a response means. [WithErrors]
// changes that.
type Transport struct {
	next http.RoundTripper // the layers below
	base http.RoundTripper // for requests outside WithHosts
	cfg  *config

	// it and rl are the idempotency and rate-limit layers: the fused
	// path sends on rl's base, and a call goes into it directly, as its
	// RoundTrip would check and find what this one has already. fused
	// reports that the options leave the fused path something to skip
	// (see fused.go).
	it    *IdempotencyTransport
	rl    *RateLimitTransport
	fused bool
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns the full stack on top of base; a nil base means
// [http.DefaultTransport]. The integration is one line:
//
//	client.Transport = spotflowhttp.NewTransport(client.Transport)
func NewTransport(base http.RoundTripper, opts ...Option) *Transport {
	cfg := newConfig(opts)
	rl := newRateLimitTransport(base, cfg)
	rt := newRetryTransport(rl, cfg)
	it := newIdempotencyTransport(rt, cfg)
	return &Transport{next: it, base: baseOrDefault(base), cfg: cfg, it: it, rl: rl, fused: cfg.fusable() && rl.bucket == nil && rl.limiter == nil}
}

// WithErrors makes the outermost layer turn a final non-success response
// (other than treat-as-success) into a returned [*Error], with the response
// body drained and closed, instead of returning the response. Callers that
// decode error bodies themselves, like generated OpenAPI clients, want the
// default, which returns the response. The outermost layer of a call reads
// it: [Transport], or [IdempotencyTransport] or [RetryTransport] used alone.
func WithErrors() Option {
	return optionFunc(func(cfg *config) { cfg.returnErrors = true })
}

// WithOnEscalate calls fn once per call that ends in an escalate-category
// response (invalid_credentials, insufficient_balance, a 401 or 403): a
// human has to act. fn gets the call's context (see [Observer] for what it
// holds and how fn must behave) and runs before RoundTrip returns. A later
// WithOnEscalate replaces fn; use [WithObserver] for several. The
// outermost layer of a call reads it: [Transport], or [IdempotencyTransport]
// or [RetryTransport] used alone.
func WithOnEscalate(fn func(context.Context, *Error)) Option {
	return optionFunc(func(cfg *config) { cfg.onEscalate = fn })
}

// WithHaltOnEscalate makes a Transport stop sending with a credential after
// an authentication failure (any 401): every later request with the same
// Authorization header to the same host is answered locally, without the
// network, with that *Error (Attempts 0, not Uncertain) until Resume is
// called. A revoked key then costs one request, not one per call; other
// keys and other hosts are not affected. Only [Transport] reads it.
func WithHaltOnEscalate() Option {
	return optionFunc(func(cfg *config) { cfg.haltOnEscalate = true })
}

// RoundTrip implements [http.RoundTripper].
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.cfg.covers(req) {
		return t.base.RoundTrip(req)
	}
	if t.fused && t.unchanged(req) {
		resp, err := send(t.rl.base, req)
		if err == nil && resp.StatusCode < 400 {
			return t.succeeded(req, resp), nil
		}
		return t.roundTrip(req, &answer{resp, err})
	}
	return t.roundTrip(req, nil)
}

// roundTrip is the call through every layer. first, if not nil, is the
// answer to its first attempt, which the fused path has already sent.
func (t *Transport) roundTrip(req *http.Request, first *answer) (*http.Response, error) {
	c, r, owner := begin(req, t.cfg)
	c.first = first
	if owner && t.cfg.haltOnEscalate && first == nil && t.cfg.scopes.busy.Load() != 0 {
		if e := c.scopeIn(t.cfg.scopes, r).halted.Load(); e != nil {
			closeBody(req)
			c.done = true
			h := haltedError(e)
			if t.cfg.obs != nil {
				t.cfg.refusedByHalt(c, h)
			}
			return nil, h
		}
	}
	resp, err := t.it.roundTrip(c, r)
	if !owner {
		return resp, err
	}
	resp, err = t.cfg.finish(c, resp, err)
	if t.cfg.haltOnEscalate {
		t.haltOn(c, r, err)
	}
	return resp, err
}

// haltedError is the local answer to a request whose credential is halted:
// the 401 that halted it, as nothing of this call was sent.
func haltedError(e *Error) *Error {
	h := *e
	h.Attempts, h.IdempotencyKey, h.Uncertain, h.RetryAfter, h.local = 0, "", false, 0, true
	return &h
}

// Resume lifts every halt set by WithHaltOnEscalate, for instance once the
// API keys have been rotated. It is safe to call at any time.
func (t *Transport) Resume() {
	n := t.cfg.scopes.resume()
	if o := t.cfg.obs; o != nil && o.Resumed != nil {
		t.cfg.resumed(n)
	}
}

// haltOn halts the call's credential on its host after a 401.
func (t *Transport) haltOn(c *call, req *http.Request, err error) {
	e := c.err
	if e == nil {
		errors.As(err, &e)
	}
	if e != nil && e.StatusCode == http.StatusUnauthorized && !e.local {
		h := *e
		c.scopeIn(t.cfg.scopes, req).halt(&h)
		if o := t.cfg.obs; o != nil && o.Halted != nil {
			t.cfg.halted(c, req, e)
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
		e := c.asError(err)
		if e.Attempts == 0 {
			e.Attempts = int(c.attempts)
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
		c.endJournal(cfg, e)
		return nil, e
	}
	if resp.Request == nil || callOf(resp.Request) != c {
		resp.Request = c.req
	}
	if c.resp != resp {
		c.resp, c.err = resp, classifyResponse(cfg, resp)
		if c.err != nil && c.err.unread {
			e := c.err
			c.resp, c.err = nil, nil
			return cfg.annotate(c, nil, e)
		}
	}
	e := c.err
	if e == nil {
		c.endJournal(cfg, nil)
		return resp, nil
	}
	e.Attempts = max(int(c.attempts), 1)
	e.IdempotencyKey = c.key
	// A final 429 or 4xx says nothing of an earlier attempt that may have
	// been processed.
	e.Uncertain = e.Uncertain || c.maybeSent
	c.endJournal(cfg, e)
	if cfg.returnErrors && e.Category != CategoryTreatAsSuccess {
		discard(resp)
		return nil, e
	}
	return resp, nil
}

// asError turns an error from below, which ended the call, into an *Error.
// Errors that are not already one are connection errors of its last
// attempt.
func (c *call) asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	sent, _ := connErrorInfo(err)
	return &Error{Category: CategoryRetry, Uncertain: sent && !c.unsent(), Err: err, kind: ErrAPIConnection}
}
