package spotflowhttp

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limiter paces requests. Wait blocks until one request may be sent, or
// returns an error (for instance because ctx is done or its deadline would
// pass first). [*rate.Limiter] satisfies it. Implementations must be safe
// for concurrent use.
type Limiter interface {
	Wait(ctx context.Context) error
}

// CoolDownLimiter is a [Limiter] that also wants to know when Spotflow asked
// for a pause: a 429 with Retry-After, or X-RateLimit-Remaining 0 until
// X-RateLimit-Reset. A [RateLimitTransport] calls CoolDown with the time
// before which nothing should be sent, so that a limiter shared by many
// processes (see the redislimit module) can hold them all back; its Wait is
// expected to honour that time.
type CoolDownLimiter interface {
	Limiter
	CoolDown(ctx context.Context, until time.Time)
}

// Spotflow's documented limits, for the presets ([WithTestKeyRateLimit],
// [WithLiveKeyRateLimit], [WithRateLimitByKey]).
const (
	TestKeyRate  rate.Limit = 1 // 60 requests a minute
	TestKeyBurst            = 10
	LiveKeyRate  rate.Limit = 5 // 300 requests a minute
	LiveKeyBurst            = 30
)

// rateLimitConfig is what the rate-limit options set.
type rateLimitConfig struct {
	rate        rate.Limit
	burst       int
	limiter     Limiter
	limiterFunc func(*http.Request) Limiter
	byKey       bool
	adaptive    bool
	ceiling     rate.Limit
}

// WithRateLimit paces requests through a token bucket of r requests a
// second with the given burst, shared by all goroutines using the
// transport, whatever their host or credential. r may be [rate.Inf] (no
// pacing). The default is no bucket, and so is WithRateLimit(0, 0). It
// panics if r is negative or NaN, if burst is negative, or if a finite r
// and burst admit no request or stop admitting (burst 0, or r 0 with a
// burst). Only [RateLimitTransport] reads it.
func WithRateLimit(r rate.Limit, burst int) Option {
	checkRateLimit(r, burst)
	return optionFunc(func(cfg *config) { cfg.limits.rate, cfg.limits.burst = r, burst })
}

// WithTestKeyRateLimit paces requests to Spotflow's documented limit for
// test keys: 60 a minute, in bursts of at most 10, as [WithRateLimit] does.
// Only [RateLimitTransport] reads it.
func WithTestKeyRateLimit() Option { return WithRateLimit(TestKeyRate, TestKeyBurst) }

// WithLiveKeyRateLimit paces requests to Spotflow's documented limit for
// live keys: 300 a minute, in bursts of at most 30, as [WithRateLimit] does.
// Only [RateLimitTransport] reads it.
func WithLiveKeyRateLimit() Option { return WithRateLimit(LiveKeyRate, LiveKeyBurst) }

// WithRateLimitByKey paces each credential by the documented limit of the
// key in its Authorization header: test-key limits for sk_test_ keys,
// live-key limits for sk_live_ keys, none for others. Every key gets a
// bucket of its own on each host, so that one merchant's burst never delays
// another's. The key is looked at, never stored. Only [RateLimitTransport]
// reads it.
func WithRateLimitByKey() Option {
	return optionFunc(func(cfg *config) { cfg.limits.byKey = true })
}

// WithLimiter paces requests through l, for instance a [*rate.Limiter]
// shared with other code, or a redislimit.Limiter shared with other
// processes. A *rate.Limiter runs on the transport's clock. l paces every
// request, whatever its host or credential: that is what you chose. A nil l
// means none. Only [RateLimitTransport] reads it.
func WithLimiter(l Limiter) Option {
	return optionFunc(func(cfg *config) { cfg.limits.limiter = l })
}

// WithLimiterFunc paces each request through the Limiter fn returns for it,
// so that each merchant, credential or route can have a limiter of its own
// (for instance a redislimit.Limiter per merchant, shared by every process
// serving that merchant). fn runs on the caller's goroutine for every
// attempt; it must be safe for concurrent use and should return quickly,
// the same Limiter for the same merchant. A nil result falls back to
// WithLimiter's, if any. A Limiter that implements [CoolDownLimiter] hears
// of the pauses its requests' answers ask for. Only [RateLimitTransport]
// reads it.
func WithLimiterFunc(fn func(*http.Request) Limiter) Option {
	return optionFunc(func(cfg *config) { cfg.limits.limiterFunc = fn })
}

// WithAdaptiveRateLimit paces requests at a rate learned from Spotflow's
// answers, for when the account's limit is unknown. Until the first 429 it
// paces at 100 requests a second, faster with every request admitted (at
// the ceiling instead, if one is set), so that one request, not every
// worker's, meets the limit. It then measures the limit between 429s (a
// token bucket admits its rate times the time between two moments its
// bank was empty), paces 3 % above it, and after 7 s of traffic without a
// 429 doubles the pace every second until the next 429, so that a limit
// that went up is found within seconds. X-RateLimit-Remaining 0 counts as
// a 429 that was not sent (the server's bank is empty). Each host and
// credential learns on its own. See [WithAdaptiveCeiling]. Only [RateLimitTransport] reads
// it.
func WithAdaptiveRateLimit() Option {
	return optionFunc(func(cfg *config) { cfg.limits.adaptive = true })
}

// WithAdaptiveCeiling bounds the rate adaptive mode may reach, in requests a
// second; it implies [WithAdaptiveRateLimit]. The default is no ceiling. It
// panics if r is not positive. Only [RateLimitTransport] reads it.
func WithAdaptiveCeiling(r rate.Limit) Option {
	checkCeiling(r)
	return optionFunc(func(cfg *config) { cfg.limits.adaptive, cfg.limits.ceiling = true, r })
}

// RateLimitTransport keeps requests under Spotflow's limits instead of
// bouncing off them. Always: a 429 with Retry-After holds back the requests
// with the same credential to the same host until the time passes (a shared
// cool-down, never shortened by a later, shorter Retry-After), and so does
// X-RateLimit-Remaining 0 until X-RateLimit-Reset. When such a pause ends,
// the requests it held back leave one at a time at the rate the server
// states (X-RateLimit-Limit requests until X-RateLimit-Reset), or at the
// pace of the limiters below, rather than all at once; without either the
// rate is unknown and they go when it ends. Optionally: a token
// bucket ([WithRateLimit] and the presets), a bucket per key at its preset
// ([WithRateLimitByKey]), a [Limiter] of yours ([WithLimiter], or one per
// credential with [WithLimiterFunc]), and adaptive pacing per credential
// ([WithAdaptiveRateLimit]).
//
// No request waits past its context's deadline, longer than the retry cap
// ([WithMaxRetryAfter]) for a cool-down or hold (counted over the whole
// wait), or longer than the cap for one token bucket: it fails at once with
// an [*Error] matching [ErrRateLimit] (and [context.DeadlineExceeded] for
// the deadline), its body closed. The cap is not applied to the sum of those
// waits, nor to a [Limiter] of yours, which its own rules and the deadline
// bound.
//
// A RateLimitTransport is safe for concurrent use by multiple goroutines. It
// starts no goroutines.
type RateLimitTransport struct {
	base    http.RoundTripper
	cfg     *config
	bucket  *rate.Limiter
	limiter Limiter

	// unpaced: no limiter of any kind, and nothing (an observer, a
	// journal) that wants every call's scope
	unpaced bool
}

var _ http.RoundTripper = (*RateLimitTransport)(nil)

// NewRateLimitTransport returns the rate-limit layer alone on top of base
// (nil means [http.DefaultTransport]). Put it below the retry layer, as
// [NewTransport] does, so that every attempt pays for a token.
func NewRateLimitTransport(base http.RoundTripper, opts ...Option) *RateLimitTransport {
	return newRateLimitTransport(base, newConfig(opts))
}

func newRateLimitTransport(base http.RoundTripper, cfg *config) *RateLimitTransport {
	t := &RateLimitTransport{base: baseOrDefault(base), cfg: cfg}
	l := cfg.limits
	if l.rate != 0 || l.burst != 0 {
		t.bucket = rate.NewLimiter(l.rate, l.burst)
	}
	if rl, ok := l.limiter.(*rate.Limiter); ok && t.bucket == nil {
		t.bucket = rl
	} else {
		t.limiter = l.limiter
	}
	t.unpaced = cfg.fusable() && t.bucket == nil && t.limiter == nil
	return t
}

// RoundTrip implements [http.RoundTripper].
func (t *RateLimitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.cfg.covers(req) {
		return t.base.RoundTrip(req)
	}
	return t.roundTrip(req)
}

// roundTrip admits and sends req, a request the policy covers.
func (t *RateLimitTransport) roundTrip(req *http.Request) (*http.Response, error) {
	// A quiet transport has nothing that could hold req back: its scope is
	// looked up only if the answer has something to teach it.
	var s *scope
	if !t.quiet() {
		s = t.cfg.scopes.scopeOf(req)
	}
	lim := t.limiterFor(req)
	if a, ok := firstAnswer(req); ok {
		// Sent by NewTransport's fused path, which admitted it.
		if a.err == nil {
			t.observe(req, s, lim, a.resp, time.Time{})
		}
		return a.resp, a.err
	}
	if err := t.admit(req, s, lim); err != nil {
		closeBody(req)
		if c := callOf(req); c != nil && c.attempts > 0 {
			c.attempts-- // counted by the retry layer, but never sent
		}
		return nil, err
	}
	var sent time.Time
	if s != nil && s.adaptive != nil {
		sent = t.cfg.clock.Now()
	}
	if o := t.cfg.obs; o != nil && o.AttemptSent != nil {
		t.cfg.attemptSent(req)
	}
	resp, err := send(t.base, req)
	if err == nil {
		t.observe(req, s, lim, resp, sent)
	}
	return resp, err
}

// quiet reports whether nothing can hold a request back: no limiter is
// configured and no scope holds a pause, a release or a halt.
func (t *RateLimitTransport) quiet() bool {
	return t.unpaced && t.cfg.scopes.busy.Load() == 0
}

// limiterFor is the Limiter of yours that paces req, nil if none.
func (t *RateLimitTransport) limiterFor(req *http.Request) Limiter {
	if f := t.cfg.limits.limiterFunc; f != nil {
		var l Limiter
		callOf(req).hook(func() { l = f(req) })
		if l != nil {
			return l
		}
	}
	return t.limiter
}

// admit waits until req, of scope s, may be sent.
func (t *RateLimitTransport) admit(req *http.Request, s *scope, lim Limiter) error {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return &Error{Category: CategoryRetry, Err: err, kind: ErrAPIConnection, local: true}
	}
	if s == nil {
		return nil // quiet
	}
	var waited time.Duration // on pauses, which the cap bounds as a whole
	for {
		w, err := t.waitPauses(req, s, waited)
		if err != nil {
			return err
		}
		paused := w > waited
		waited = w
		if err := t.release(req, s, paused); err != nil {
			return err
		}
		if err := t.pace(req, s, lim); err != nil {
			return err
		}
		// A 429 to another request may have started a pause while this one
		// waited for its turn: it must not go out during the pause.
		if !t.paused(s) {
			return nil
		}
	}
}

// pace waits for req's turn in every limiter that paces scope s.
func (t *RateLimitTransport) pace(req *http.Request, s *scope, lim Limiter) error {
	ctx := req.Context()
	if t.bucket != nil {
		if err := t.reserve(req, RateLimitTokenBucket, t.bucket); err != nil {
			return err
		}
	}
	if s.keyBucket != nil {
		if err := t.reserve(req, RateLimitTokenBucket, s.keyBucket); err != nil {
			return err
		}
	}
	if s.adaptive != nil {
		if err := t.reserve(req, RateLimitAdaptive, s.adaptive.limiter()); err != nil {
			return err
		}
	}
	if lim != nil {
		var start time.Time
		if t.cfg.obs != nil {
			start = t.cfg.clock.Now()
		}
		if err := lim.Wait(ctx); err != nil {
			e := &Error{Category: CategoryRetry, Err: err, kind: ErrRateLimit, local: true}
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				e.Err = errors.Join(err, cerr)
			}
			if o := t.cfg.obs; o != nil && o.RateLimitRefused != nil {
				t.cfg.rateLimitRefused(req, RateLimitLimiter, 0, e.Err)
			}
			return e
		}
		if o := t.cfg.obs; o != nil && o.RateLimitWaited != nil {
			t.cfg.rateLimitWaited(req, RateLimitLimiter, t.cfg.clock.Now().Sub(start))
		}
	}
	return nil
}

// release spreads the requests that a pause of s held back, at the rate the
// server said it admits, over the time after the pause, instead of letting
// them all go when it ends: those that waited take their turn, and so do
// requests that come while some are still waiting. When it is over, s is
// back on the fast path.
func (t *RateLimitTransport) release(req *http.Request, s *scope, waited bool) error {
	r := s.release.Load()
	if r == nil {
		return nil
	}
	if !waited && r.lim.TokensAt(t.cfg.clock.Now()) >= 1 {
		s.endRelease(r) // nobody is waiting for a turn
		return nil
	}
	return t.reserve(req, r.kind, r.lim)
}

// releaser is the pacing of the requests held back by a pause of the given
// kind, after it ends.
type releaser struct {
	lim  *rate.Limiter
	kind RateLimitKind
}

// paused reports whether a cool-down or hold of s is on now.
func (t *RateLimitTransport) paused(s *scope) bool {
	u := max(s.coolUntil.Load(), s.holdUntil.Load())
	return u != 0 && u > t.cfg.clock.Now().UnixNano()
}

// waitPauses waits out the scope's cool-down and hold, for a request that
// has waited w on pauses already, and returns its whole wait on them. A 429
// to another request may extend them while this one waits: look again after
// each wait. The cap bounds the whole wait.
func (t *RateLimitTransport) waitPauses(req *http.Request, s *scope, w time.Duration) (waited time.Duration, err error) {
	for {
		cool, hold := s.coolUntil.Load(), s.holdUntil.Load()
		u, kind := cool, RateLimitCoolDown
		if hold > cool {
			u, kind = hold, RateLimitHold
		}
		if u == 0 {
			return w, nil
		}
		now := t.cfg.clock.Now()
		d := time.Duration(u - now.UnixNano())
		if d <= 0 {
			// Over: back to the fast path.
			s.endPause(&s.coolUntil, u)
			s.endPause(&s.holdUntil, u)
			if max(s.coolUntil.Load(), s.holdUntil.Load()) <= now.UnixNano() {
				return w, nil
			}
			continue
		}
		if err := t.wait(req, kind, now, d, w); err != nil {
			return w, err
		}
		w += d
	}
}

// reserve takes a token from lim, on the transport's clock, waiting for it
// if need be.
func (t *RateLimitTransport) reserve(req *http.Request, kind RateLimitKind, lim *rate.Limiter) error {
	now := t.cfg.clock.Now()
	if lim.AllowN(now, 1) {
		return nil
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		if o := t.cfg.obs; o != nil && o.RateLimitRefused != nil {
			t.cfg.rateLimitRefused(req, kind, 0, errBurstZero)
		}
		return &Error{Category: CategoryRetry, Err: errBurstZero, kind: ErrRateLimit, local: true}
	}
	if err := t.wait(req, kind, now, r.DelayFrom(now), 0); err != nil {
		r.CancelAt(t.cfg.clock.Now())
		return err
	}
	return nil
}

// wait holds req, which has already waited for waited, back for d more for
// kind, or fails at once if the whole wait would be over the cap or d past
// the deadline.
func (t *RateLimitTransport) wait(req *http.Request, kind RateLimitKind, now time.Time, d, waited time.Duration) error {
	ctx := req.Context()
	refuse := func(err error) error {
		if o := t.cfg.obs; o != nil && o.RateLimitRefused != nil {
			t.cfg.rateLimitRefused(req, kind, d, err)
		}
		return &Error{Category: CategoryRetry, RetryAfter: d, Err: err, kind: ErrRateLimit, local: true}
	}
	if waited+d > t.cfg.maxRetryAfter {
		return refuse(nil)
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		return refuse(context.DeadlineExceeded)
	}
	if err := t.cfg.clock.Sleep(ctx, d); err != nil {
		return refuse(err)
	}
	if o := t.cfg.obs; o != nil && o.RateLimitWaited != nil {
		t.cfg.rateLimitWaited(req, kind, d)
	}
	return nil
}

// observe learns from a response to a request of scope s: a 429's
// Retry-After starts or extends the scope's cool-down, an exhausted
// X-RateLimit-Remaining its hold; adaptive mode counts admissions and
// throttles.
func (t *RateLimitTransport) observe(req *http.Request, s *scope, lim Limiter, resp *http.Response, sent time.Time) {
	if s == nil { // quiet: only a 429 or an empty bank has something to teach
		if resp.StatusCode != http.StatusTooManyRequests && !emptyBank(resp.Header) {
			return
		}
		s = t.cfg.scopes.scopeOf(req)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		t.learnFrom429(req, s, lim, resp, sent)
	} else if s.adaptive != nil {
		t.learnFromAdmission(s, resp.Header, sent)
	}
	if emptyBank(resp.Header) {
		t.learnFromEmptyBank(req, s, lim, resp, sent)
	}
}

// emptyBank reports whether h says no request is left: X-RateLimit-Remaining
// 0.
func emptyBank(h http.Header) bool {
	// Canonical key: no allocation on the hot path.
	rem := h["X-Ratelimit-Remaining"]
	return len(rem) > 0 && strings.TrimSpace(rem[0]) == "0"
}

// learnFrom429 obeys a 429's Retry-After with a cool-down of s, and
// gives adaptive mode the 429 as a throttle.
func (t *RateLimitTransport) learnFrom429(req *http.Request, s *scope, lim Limiter, resp *http.Response, sent time.Time) {
	now := t.cfg.clock.Now()
	d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now)
	if !ok || d > maxCoolDown {
		d = 0 // none, or absurd: not obeyed, nor the end of this congestion
	}
	if d > 0 {
		t.startPause(req, s, lim, RateLimitCoolDown, &s.coolUntil, now, now.Add(d), resp)
	}
	if s.adaptive != nil {
		s.adaptive.throttled(now, sent, d)
	}
}

// learnFromAdmission gives adaptive mode a response other than a 429 as
// an admission, with the share of the bank its X-RateLimit headers say
// is left.
func (t *RateLimitTransport) learnFromAdmission(s *scope, h http.Header, sent time.Time) {
	now := t.cfg.clock.Now()
	s.adaptive.admitted(now, sent)
	if rem, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Remaining"))); err == nil {
		if limit, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Limit"))); err == nil && limit > 0 {
			s.adaptive.remaining(now, sent, rem, limit)
		}
	}
}

// learnFromEmptyBank holds s until X-RateLimit-Reset when the response
// says no request is left (a Reset past or further than maxCoolDown is
// not obeyed), and gives adaptive mode the refill it states.
func (t *RateLimitTransport) learnFromEmptyBank(req *http.Request, s *scope, lim Limiter, resp *http.Response, sent time.Time) {
	reset, err := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("X-Ratelimit-Reset")), 10, 64)
	if err != nil {
		return
	}
	now := t.cfg.clock.Now()
	if reset <= now.Unix() || reset-now.Unix() > int64(maxCoolDown/time.Second) {
		return
	}
	until := time.Unix(reset, 0)
	t.startPause(req, s, lim, RateLimitHold, &s.holdUntil, now, until, resp)
	if s.adaptive == nil {
		return
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		// The bank is empty, as a 429 would say, without
		// the 429: a sample of the rate, the end of a probe.
		s.adaptive.throttled(now, sent, until.Sub(now))
	}
	if limit, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("X-Ratelimit-Limit"))); err == nil && limit > 0 {
		s.adaptive.refills(until, limit)
	}
}

// startPause makes the pause *p of s (its cool-down or its hold) last at
// least until until, and tells of it those who act on it: the observer,
// if that moved the pause; a Limiter that wants to know; the release of
// the requests it holds back.
func (t *RateLimitTransport) startPause(req *http.Request, s *scope, lim Limiter, kind RateLimitKind, p *atomic.Int64, now, until time.Time, resp *http.Response) {
	if s.extendPause(p, until) && t.cfg.obs != nil && t.cfg.obs.CoolDownStarted != nil {
		t.cfg.coolDownStarted(req, kind, now, until, resp)
	}
	tellLimiter(req.Context(), lim, until)
	t.armRelease(s, lim, kind, resp.Header, now)
}

// armRelease makes the requests held back by a pause of s leave, when it
// ends, at the rate the server states in h (X-RateLimit-Limit requests by
// X-RateLimit-Reset), one at a time. A scope paced already (by a bucket,
// adaptive mode or a Limiter of yours) is left to that pacing; without the
// headers the rate is unknown, and the requests go when the pause ends.
func (t *RateLimitTransport) armRelease(s *scope, lim Limiter, kind RateLimitKind, h http.Header, now time.Time) {
	if t.bucket != nil || s.keyBucket != nil || s.adaptive != nil || lim != nil {
		return
	}
	if r := statedRate(h, now); r > 0 {
		s.setRelease(&releaser{rate.NewLimiter(r, 1), kind})
	}
}

// statedRate is the rate the X-RateLimit headers in h say the server
// admits: X-RateLimit-Limit requests until X-RateLimit-Reset (at least a
// second away, as Reset is in whole seconds). It is 0 without them.
func statedRate(h http.Header, now time.Time) rate.Limit {
	limit, err := strconv.Atoi(strings.TrimSpace(h.Get("X-Ratelimit-Limit")))
	if err != nil || limit <= 0 {
		return 0
	}
	reset, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-Ratelimit-Reset")), 10, 64)
	if err != nil || reset-now.Unix() > int64(maxCoolDown/time.Second) {
		return 0 // none, or too far away to be a reset (see maxCoolDown)
	}
	d := max(time.Unix(reset, 0).Sub(now), time.Second)
	return rate.Limit(float64(limit) / d.Seconds())
}

// maxCoolDown bounds the pauses the server can impose on the whole
// transport: a Retry-After or X-RateLimit-Reset further away than this is
// taken for a mistake and ignored (the response still goes back with it).
const maxCoolDown = time.Hour

// tellLimiter passes a pause on to a Limiter that wants to know, such as
// one shared by many processes.
func tellLimiter(ctx context.Context, lim Limiter, until time.Time) {
	if s, ok := lim.(CoolDownLimiter); ok {
		s.CoolDown(ctx, until)
	}
}
