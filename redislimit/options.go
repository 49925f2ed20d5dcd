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
	logger   *slog.Logger
}

// WithFallback sets the share of the limit, rate and burst alike, that a
// Limiter allows itself while Redis is unreachable. The default, 0.5, suits
// two processes; with n processes sharing a name, 1/n keeps them all under
// the limit, at the cost of slowing each. The burst is rounded down, to at
// least 1. WithFallback panics if fraction is not a positive finite number.
func WithFallback(fraction float64) Option {
	if !(fraction > 0) || math.IsInf(fraction, 1) {
		panic(fmt.Sprintf("redislimit: fallback fraction %v is not positive and finite", fraction))
	}
	return optionFunc(func(c *config) { c.fraction = fraction })
}

// WithTimeout bounds each Redis call, 100 ms by default, so that a Redis
// that is slow or gone delays a request by at most that before the Limiter
// falls back to local pacing. WithTimeout panics if d is not positive.
func WithTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("redislimit: timeout %v is not positive", d))
	}
	return optionFunc(func(c *config) { c.timeout = d })
}

// WithLogger logs, at Warn level, when a Limiter loses Redis and falls back
// to local pacing (once per outage) and, at Info level, when Redis is back.
// The default is no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}
