package redislimit

import (
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Option configures a Limiter.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	fraction float64
	timeout  time.Duration
	maxWait  time.Duration
	logger   *slog.Logger
	err      error // the first invalid option value, reported by New
}

// invalid records a bad option value; New reports the first one. Options
// do not panic: a value read from configuration should fail New with an
// error the caller can show, not crash the process.
func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("redislimit: "+format, args...)
	}
}

// WithFallback sets the share of the limit, rate and burst alike, that a
// Limiter allows itself while Redis is unreachable. The default, 0.5, suits
// two processes; with n processes sharing a name, 1/n keeps them all under
// the limit, at the cost of slowing each. The burst is rounded down, to at
// least 1. New returns an error if fraction is not a positive finite
// number.
func WithFallback(fraction float64) Option {
	return optionFunc(func(c *config) {
		if !(fraction > 0) || math.IsInf(fraction, 1) {
			c.invalid("WithFallback(%v): the fraction must be a positive finite number", fraction)
			return
		}
		c.fraction = fraction
	})
}

// WithTimeout bounds each Redis call, 100 ms by default, so that a Redis
// that is slow or gone delays a request by at most that before the Limiter
// falls back to local pacing. New returns an error if d is not positive.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.invalid("WithTimeout(%v): the timeout must be positive", d)
			return
		}
		c.timeout = d
	})
}

// WithMaxWait caps how long one Wait may hold a request back, 60 s by
// default, like spotflowhttp.WithMaxRetryAfter: a Wait that would have to
// wait longer in all, for a cool-down (a Retry-After of a day stored by
// another process, say) or for a token, fails at once with an error
// matching ErrWaitTooLong instead of sleeping. New returns an error if d is
// not positive.
func WithMaxWait(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.invalid("WithMaxWait(%v): the cap must be positive", d)
			return
		}
		c.maxWait = d
	})
}

// WithLogger logs, at Warn level, when a Limiter loses Redis and falls back
// to local pacing (once per outage) and, at Info level, when Redis is back.
// The default is no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}
