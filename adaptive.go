package spotflowhttp

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// adaptiveLimiter learns the rate Spotflow admits. It paces at rate.Inf (or
// the ceiling) until the first 429. Then it estimates what the server admits
// from the requests sent in the second before the throttled one that were
// not throttled, attributed to the time they were sent, so that answers
// still on their way when the 429 arrives count too (they correct the
// estimate as they come, until the next second). It paces at 95 % of that,
// never below one request per Retry-After, and raises the rate as
// base×(1+k·t²), t the seconds since. A later 429 (at most one a second
// acts: the others are the same congestion) cuts the rate by at most 30 %,
// since the estimate may be low for reasons of our own.
type adaptiveLimiter struct {
	lim     *rate.Limiter
	ceiling rate.Limit

	mu       sync.Mutex
	throttle time.Time  // send time of the last 429 acted on; zero before the first
	at       time.Time  // when that 429 arrived
	cap      rate.Limit // upper bound of the rate that 429 allows (95 % of the pace before it)
	floor    rate.Limit // lower bound: a cut of at most 30 %, one request per Retry-After
	base     rate.Limit // rate set at that 429, corrected by late answers
	raised   time.Time  // last time the rate was raised
	slots    [20]int    // admissions by send time, 100 ms slots over the last 2 s
	slot     int64      // the newest slot, in 100 ms since the epoch
}

const (
	adaptiveBackoff = 0.95
	adaptiveMaxCut  = 0.7
	adaptiveK       = 1e-4 // per second squared
	adaptiveFloor   = 0.05 // requests a second
	slotWidth       = 100 * time.Millisecond
)

func newAdaptiveLimiter(ceiling rate.Limit) *adaptiveLimiter {
	start := rate.Inf
	if ceiling > 0 {
		start = ceiling
	}
	return &adaptiveLimiter{lim: rate.NewLimiter(start, 1), ceiling: ceiling}
}

// admitted counts a request Spotflow did not throttle, by the time it was
// sent, and raises the rate.
func (a *adaptiveLimiter) admitted(now, sent time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.advance(now)
	if i := sent.UnixNano() / int64(slotWidth); i > a.slot-int64(len(a.slots)) && i <= a.slot {
		a.slots[i%int64(len(a.slots))]++
	}
	if a.throttle.IsZero() {
		return
	}
	if now.Sub(a.at) < time.Second && sent.Before(a.throttle) {
		// A late answer from before the 429: the estimate was low.
		a.base = max(a.base, a.estimate())
	}
	if now.Sub(a.raised) < slotWidth {
		return
	}
	a.raised = now
	s := now.Sub(a.at).Seconds()
	r := a.base * rate.Limit(1+adaptiveK*s*s)
	if a.ceiling > 0 && r > a.ceiling {
		r = a.ceiling
	}
	a.lim.SetLimitAt(now, r)
}

// throttled cuts the rate after a 429 to a request sent at sent, which
// asked to wait retryAfter (0 if it did not say).
func (a *adaptiveLimiter) throttled(now, sent time.Time, retryAfter time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.at.IsZero() && now.Sub(a.at) < time.Second {
		return
	}
	a.advance(now)
	cur := a.lim.Limit()
	a.throttle, a.at, a.raised, a.cap = sent, now, now, cur*adaptiveBackoff
	// One request per Retry-After always fits what the server asked: a
	// sparse sample (little traffic) must not cut the pace below that.
	a.floor = adaptiveFloor
	if retryAfter > 0 {
		a.floor = max(a.floor, rate.Limit(1/retryAfter.Seconds()))
	}
	if cur != rate.Inf {
		a.floor = max(a.floor, cur*adaptiveMaxCut)
	}
	a.base = a.estimate()
	a.lim.SetLimitAt(now, a.base)
}

// estimate is 95 % of the admissions sent in the second before the
// throttled request, within the bounds set at that 429.
func (a *adaptiveLimiter) estimate() rate.Limit {
	// The ten slots that end with the throttled request's.
	to := a.throttle.UnixNano() / int64(slotWidth)
	from := to - int64(time.Second/slotWidth) + 1
	n := 0
	for i := max(from, a.slot-int64(len(a.slots))+1); i <= to && i <= a.slot; i++ {
		n += a.slots[i%int64(len(a.slots))]
	}
	r := min(rate.Limit(n)*adaptiveBackoff, a.cap)
	if a.ceiling > 0 {
		r = min(r, a.ceiling)
	}
	return max(r, min(a.floor, a.cap))
}

// advance moves the ring of slots to now, clearing slots that passed.
func (a *adaptiveLimiter) advance(now time.Time) {
	s := now.UnixNano() / int64(slotWidth)
	if s-a.slot >= int64(len(a.slots)) {
		a.slots = [20]int{}
		a.slot = s
		return
	}
	for a.slot < s {
		a.slot++
		a.slots[a.slot%int64(len(a.slots))] = 0
	}
}
