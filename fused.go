package spotflowhttp

import (
	"net/http"
	"time"
)

// The fused path is how [NewTransport] sends a call that its layers would
// leave as it is: a call with no idempotency key, while none of the
// transport's scopes holds a pause, a release or a halt, with no limiter,
// observer, journal or response check configured. Every layer would pass
// such a request on unchanged and would only look at the answer, so the
// fused path sends the caller's request itself to the base, with no copy
// and no call record, and does what the layers do with a success: the
// rate-limit layer's X-RateLimit feedback and the retry budget's
// earn-back. Anything else (an error, a status of 400 or more) goes through
// the layers as the answer to the call's first attempt (see
// [Transport.roundTrip]): the policy has one implementation.
//
// A response of the fused path has no annotation: [ErrorOf] finds it a
// success from its status, [AttemptsOf] counts it once.

// answer is what one attempt got: a response or an error.
type answer struct {
	resp *http.Response
	err  error
}

// fusable reports whether the options leave the fused path something to
// skip: nothing the layers do before sending depends on more than the
// request and the state of the scopes.
func (cfg *config) fusable() bool {
	l := cfg.limits
	return cfg.obs == nil && cfg.journal == nil && cfg.check == nil &&
		l.limiterFunc == nil && !l.byKey && !l.adaptive
}

// unchanged reports whether every layer would send req on as it is and
// could not hold it back: no key is in its header, its context or due to
// its method, no scope holds a pause, a release or a halt, its context is
// live, and it is not a request of a call in flight.
func (t *Transport) unchanged(req *http.Request) bool {
	cfg := t.cfg
	if cfg.scopes.busy.Load() != 0 || methodIn(req.Method, cfg.keyMethods) || anyKeyHeader(req.Header, cfg.keyHeader) {
		return false
	}
	ctx := req.Context()
	if ctx.Err() != nil || callOf(req) != nil {
		return false
	}
	k, _ := ctx.Value(keyContextKey{}).(string)
	return k == ""
}

// anyKeyHeader reports whether h holds an idempotency key under name,
// Idempotency-Key or X-Idempotency-Key.
func anyKeyHeader(h http.Header, name string) bool {
	if len(h) == 0 {
		return false
	}
	return headerKey(h, name) != ""
}

// succeeded does what the layers do with resp, a success to the first
// attempt of req sent by the fused path, and returns it.
func (t *Transport) succeeded(req *http.Request, resp *http.Response) *http.Response {
	resp.Request = req
	if emptyBank(resp.Header) {
		t.rl.observe(req, t.cfg.scopes.get(req), nil, resp, time.Time{})
	}
	if r := t.cfg.scopes; r.spent.Load() != 0 {
		if v, ok := r.hosts.Load(hostOf(req)); ok {
			v.(*hostScope).budget.succeeded(1)
		}
	}
	return resp
}

// firstAnswer takes the answer of the call's first attempt, which the fused
// path has sent, if req belongs to such a call and it has not been taken.
func firstAnswer(req *http.Request) (*answer, bool) {
	c, ok := req.Context().(*call)
	if !ok || c.first == nil {
		return nil, false
	}
	a := c.first
	c.first = nil
	return a, true
}
