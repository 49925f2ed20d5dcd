package spotflowtest

import (
	"math"
	"time"
)

// bucket is a token bucket driven by the server's clock rather than the
// wall clock, so tests can move time instead of sleeping. It is not safe for
// concurrent use; the Server guards it with its mutex.
type bucket struct {
	rate   float64 // tokens per second
	burst  int
	tokens float64
	last   time.Time
}

func newBucket(perSecond float64, burst int, now time.Time) *bucket {
	return &bucket{rate: perSecond, burst: burst, tokens: float64(burst), last: now}
}

// refill adds the tokens earned since the last call. A clock that moves
// backwards earns nothing.
func (b *bucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = math.Min(float64(b.burst), b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// take spends one token if there is one. When there is none it reports how
// long until there will be, rounded up to whole seconds and at least one, as
// Retry-After wants it.
func (b *bucket) take(now time.Time) (ok bool, retryAfter int64) {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := int64(math.Ceil((1 - b.tokens) / b.rate))
	return false, max(wait, 1)
}

// state reports the whole tokens left and the Unix second at which the
// bucket will be full again, for the X-RateLimit-* headers.
func (b *bucket) state(now time.Time) (remaining int, reset int64) {
	b.refill(now)
	remaining = max(int(math.Floor(b.tokens)), 0)
	// Measured from b.last, which refill moved to now unless the clock went
	// backwards; the bucket fills from b.last either way.
	full := b.last.Add(time.Duration((float64(b.burst) - b.tokens) / b.rate * float64(time.Second)))
	reset = full.Unix()
	if full.Nanosecond() != 0 {
		reset++
	}
	return remaining, reset
}
