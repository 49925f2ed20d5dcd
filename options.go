package spotflowhttp

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"
)

// Option configures the transports of this package. One Option type serves
// every constructor ([NewTransport], [NewRetryTransport],
// [NewIdempotencyTransport], [NewRateLimitTransport]), so one option list can
// configure the whole stack or any layer of it. Each option's documentation
// says which layers read it; a layer ignores the options it does not read,
// by design, so a layer built alone with an option meant for another
// silently goes without it. Options are applied in order, so of two that
// set the same thing the later wins.
//
// An option given a value it cannot work with (a negative duration, a burst
// of 0 with a finite rate) panics when it is made, with a message naming it,
// as [time.NewTicker] does: such a value is a programming error, and
// failing every request at run time instead would hide it.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the settings of a stack, immutable once a constructor returns.
type config struct {
	clock  Clock
	logger *slog.Logger
	hosts  []hostPort // WithHosts; nil for every host
	scopes *scopes    // what the stack has learned, by host and credential

	// observing: every Observer given, and the one the layers call (nil
	// for none), which also carries the hooks and the logger
	observers []Observer
	obs       *Observer

	// classification and the outermost layer
	codes          map[string]Category
	check          func(*http.Response, []byte) *Error
	returnErrors   bool
	onEscalate     func(context.Context, *Error)
	haltOnEscalate bool

	// retry
	maxAttempts      int
	newBackoff       func() backoff.BackOff
	serverErrorDelay time.Duration
	maxRetryAfter    time.Duration
	retryBudget      int
	onRetry          func(context.Context, RetryEvent)

	// idempotency
	keyHeader         string
	keyFunc           func(*http.Request) (string, error)
	keyMethods        []string
	referenceField    string
	resolveDuplicates bool
	resolver          func(*http.Request) (*http.Request, error)
	journal           Journal

	// reconciler
	verifyAfter       time.Duration
	reconcileInterval time.Duration

	// rate limiting
	limits rateLimitConfig
}

// Defaults of the retry layer; see [WithMaxAttempts],
// [WithServerErrorDelay], [WithMaxRetryAfter] and [WithRetryBudget].
const (
	DefaultMaxAttempts      = 4
	DefaultServerErrorDelay = 30 * time.Second
	DefaultMaxRetryAfter    = 60 * time.Second
	DefaultRetryBudget      = 100
)

func newConfig(opts []Option) *config {
	c := &config{
		clock:             realClock{},
		maxAttempts:       DefaultMaxAttempts,
		newBackoff:        defaultBackoff,
		serverErrorDelay:  DefaultServerErrorDelay,
		maxRetryAfter:     DefaultMaxRetryAfter,
		retryBudget:       DefaultRetryBudget,
		keyHeader:         IdempotencyKeyHeader,
		keyMethods:        []string{http.MethodPost, http.MethodPatch},
		verifyAfter:       DefaultVerifyAfter,
		reconcileInterval: DefaultReconcileInterval,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(c)
		}
	}
	c.obs = c.observer()
	c.scopes = newScopes(c)
	return c
}

// defaultBackoff is exponential with jitter: 500 ms, ×2, ±50 %, at most
// 30 s between attempts. The number of attempts, not elapsed time, ends it.
func defaultBackoff() backoff.BackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     500 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         30 * time.Second,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	return b
}

// Clock is the time source of the transports: when they read the time and
// how they wait. The default is the system clock. Tests inject a fake one,
// such as spotflowtest.Clock, so they never sleep. Implementations must be
// safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, in which case it returns
	// ctx.Err() promptly.
	Sleep(ctx context.Context, d time.Duration) error
}

// WithClock sets the clock used for waits, deadlines, Retry-After dates and
// rate limiting. A nil c leaves the system clock. Every layer reads it.
func WithClock(c Clock) Option {
	return optionFunc(func(cfg *config) {
		if c != nil {
			cfg.clock = c
		}
	})
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// WithLogger logs retries and why they stopped at Debug level, escalations
// and halts at Warn level, through the *Context methods with the call's
// context, so that a handler can tie each line to the caller's trace. Log
// lines carry method, path, status, code, attempt and idempotency key; never
// headers, query strings or bodies. The default, and a nil l, is no
// logging. [RetryTransport] logs retries and their end; the outermost layer
// of a call logs its escalation, and [Transport] a halt.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(cfg *config) { cfg.logger = l })
}

// invalid panics for an option given a value it cannot work with, naming
// the option, as time.NewTicker does for a non-positive interval.
func invalid(option, format string, args ...any) {
	panic("spotflowhttp: " + option + ": " + fmt.Sprintf(format, args...))
}

// mustNotBeNegative panics if d, the value of option, is below 0.
func mustNotBeNegative(option string, d time.Duration) {
	if d < 0 {
		invalid(option, "negative duration %v", d)
	}
}

// mustBeRate panics if r, the value of option, is not a rate: NaN or below 0.
func mustBeRate(option string, r float64) {
	if math.IsNaN(r) || r < 0 {
		invalid(option, "rate %v is not a number of requests a second", r)
	}
}

// checkRateLimit panics if WithRateLimit(r, burst) could admit no request.
func checkRateLimit(r rate.Limit, burst int) {
	mustBeRate("WithRateLimit", float64(r))
	switch {
	case burst < 0:
		invalid("WithRateLimit", "negative burst %d", burst)
	case burst == 0 && r != 0 && r != rate.Inf:
		invalid("WithRateLimit", "burst 0 with rate %v admits no request; the burst must be at least 1", r)
	case r == 0 && burst != 0:
		invalid("WithRateLimit", "rate 0 admits %d requests and then none; WithRateLimit(0, 0) means no bucket", burst)
	}
}

// checkCeiling panics if WithAdaptiveCeiling(r) could admit no request.
func checkCeiling(r rate.Limit) {
	mustBeRate("WithAdaptiveCeiling", float64(r))
	if r == 0 {
		invalid("WithAdaptiveCeiling", "a ceiling of 0 admits no request")
	}
}

// checkHeaderName panics if name, the value of option, is neither empty nor
// a header field name (an RFC 9110 token).
func checkHeaderName(option, name string) {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		invalid(option, "%q is not a header name", name)
	}
}

// checkCodeCategory panics unless WithCodeCategory(code, c) names a code and
// one of the five categories.
func checkCodeCategory(code string, c Category) {
	if code == "" {
		invalid("WithCodeCategory", "empty code; a response without a code is classified by its status")
	}
	if c < CategoryNone || c > CategoryTreatAsSuccess {
		invalid("WithCodeCategory", "%v is not a category", c)
	}
}
