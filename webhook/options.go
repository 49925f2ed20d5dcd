package webhook

import (
	"fmt"
	"log/slog"
	"time"
)

// Defaults of the options.
const (
	DefaultTolerance    = 5 * time.Minute
	DefaultMaxBodyBytes = 1 << 20
)

// Option configures a [Handler].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tolerance time.Duration
	maxBody   int64
	secrets   []string
	dedup     Dedup
	now       func() time.Time
	logger    *slog.Logger
	err       error // the first invalid option value, reported by NewHandler
}

// invalid records a bad option value; NewHandler reports the first one.
// Options do not panic: a value read from configuration should fail
// NewHandler with an error the caller can show, not crash the process.
func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("webhook: "+format, args...)
	}
}

// WithTolerance sets how far the webhook-timestamp of a delivery may be
// from the Handler's clock, either way; a delivery outside it is answered
// 403, which stops a captured delivery from being replayed later. The
// default is 5 minutes, as the Standard Webhooks libraries use. NewHandler
// returns an error if d is not positive.
func WithTolerance(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.invalid("WithTolerance(%v): the tolerance must be positive", d)
			return
		}
		c.tolerance = d
	})
}

// WithMaxBodyBytes sets the largest body a Handler reads; a longer one is
// answered 413 without being read further. The default is 1 MiB, far above
// Spotflow's events of a few hundred bytes. NewHandler returns an error if
// n is not positive.
func WithMaxBodyBytes(n int64) Option {
	return optionFunc(func(c *config) {
		if n <= 0 {
			c.invalid("WithMaxBodyBytes(%d): the maximum must be positive", n)
			return
		}
		c.maxBody = n
	})
}

// WithSecrets adds secrets that a delivery may be signed with, besides the
// one given to NewHandler, so that a secret can be rotated without
// refusing the deliveries signed in between: add the new secret, change it
// at Spotflow, then remove the old one. Each is checked as NewHandler
// checks its secret.
func WithSecrets(more ...string) Option {
	return optionFunc(func(c *config) { c.secrets = append(c.secrets, more...) })
}

// WithDedup sets where a Handler remembers the webhook-ids it processed:
// give every replica behind one webhook URL the same shared store (such as
// redislimit.WebhookDedup), or each of them processes its own copy of a
// redelivered event. The default is a [MemoryDedup] of this Handler alone,
// with its default retention and size. NewHandler returns an error if d is
// nil.
func WithDedup(d Dedup) Option {
	return optionFunc(func(c *config) {
		if d == nil {
			c.invalid("WithDedup(nil): give a Dedup, or leave the option out for the in-memory one")
			return
		}
		c.dedup = d
	})
}

// WithClock sets the clock that webhook-timestamps are checked against, and
// that of the default [MemoryDedup], for tests with a fake time (such as
// spotflowtest.Clock's Now). The default is time.Now. NewHandler returns an
// error if now is nil.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) {
		if now == nil {
			c.invalid("WithClock(nil): give a clock, or leave the option out for time.Now")
			return
		}
		c.now = now
	})
}

// WithLogger logs refused deliveries at Warn level (with the reason, the
// webhook-id if any and the remote address) and failures at Error level
// (the function's error, a failing Dedup store). Log lines never carry a
// secret, a signature or the body. The default is no logging.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}
