package spotflowhttp

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Option configures the transports of this package. One Option type serves
// every constructor (NewTransport, NewRetryTransport, NewIdempotencyTransport,
// NewRateLimitTransport); a layer ignores the options meant for another, so
// one option list can configure the whole stack.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is the settings of a stack, immutable once a constructor returns.
type config struct {
	clock  Clock
	logger *slog.Logger
	hosts  []string // WithHosts; nil for every host
	scopes *scopes  // what the stack has learned, by host and credential

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

// Defaults, as documented in the README.
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
// how they wait. The default is the system clock. Tests inject a fake one so
// they never sleep. Implementations must be safe for concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, in which case it returns
	// ctx.Err() promptly.
	Sleep(ctx context.Context, d time.Duration) error
}

// WithClock sets the clock used for waits, deadlines, Retry-After dates and
// rate limiting.
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
// headers, query strings or bodies. The default is no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(cfg *config) { cfg.logger = l })
}
