package spotflowhttp

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// adaptiveLimiter learns the rate Spotflow admits and paces requests at it.
//
// It models the server as what Spotflow's limits and Retry-After describe: a
// token bucket, a bank of tokens that fills at the rate R up to a burst. A
// 429 says the bank was empty when that request arrived. So between two
// 429s the server admitted R × the time between them, less what spilled
// while its bank was full: the admissions sent between two throttled
// requests, over the time between them, is R or a little less. That is the
// estimate; it needs no guess about the burst, and it is exact when the
// client kept the bank from filling.
//
// The pace goes through phases:
//   - start: until the first 429, a slow start at 100 req/s, raised by 10
//     for each admitted request (it doubles in about 100 ms of traffic), so
//     that when the bank runs dry about one request is in flight, not every
//     worker's.
//   - the first 429: the admissions of the second before it, a rough figure
//     (it includes the bank) that the next 429 makes exact.
//   - hold: 3 % above the estimate, for holdFor of traffic. A pace at or a
//     little above R loses nothing (a bucket only loses the tokens that
//     spill while it is full and the client sends less than R); the 3 %
//     spends the bank the last cool-down refilled, slowly.
//   - probe: then the pace doubles every second of traffic, so that a limit
//     that went up is found within seconds. A probe ends in a 429 when the
//     bank runs dry, and the cool-down that follows refills what the probe
//     spent: it costs one 429 and no goodput.
//
// After a probe the estimate can be low: if the limit went up during the
// hold, the bank spilled. So a probe that ends well above the estimate
// takes the pace it reached, divided by how far above the limit probes got
// while the limit held.
//
// When the answers carry X-RateLimit-Remaining and X-RateLimit-Limit (as
// Spotflow's and spotflowtest's do), the bank need not run dry to be
// measured: the tokens reported half a second apart, with the admissions in
// between, give the rate, and the pace steers the bank to half full, so
// that no 429 comes and no hold until X-RateLimit-Reset (which lasts until
// the bank is full again) either. X-RateLimit-Remaining 0 still counts as a
// 429 that was not sent.
//
// Each congestion is acted on once: a 429 to a request sent before the
// cool-down of the last one ended (or within a second of it, if there was
// none) is the same congestion; and the turns handed out before a 429 are
// void, so that the requests that held them take new ones after the pause
// instead of queueing behind each other's stale turns. A cut that rests
// on fewer than ten admissions is at most by half (the traffic was too
// sparse to say much), and no cut goes below one request per Retry-After.
// Time is counted in traffic, not on the wall clock, so a client that
// idles does not drift into probing at rates it never tried.
type adaptiveLimiter struct {
	// lim paces the requests. A 429 replaces it: the turns handed out
	// before it fell in the pause, and a request that held one takes a new
	// one after the pause instead of queueing behind every other's stale
	// turn (at 1 req/s, 16 workers' stale turns were 16 s).
	lim     atomic.Pointer[rate.Limiter]
	ceiling rate.Limit

	mu        sync.Mutex
	pace      rate.Limit
	est       rate.Limit // the server's rate; 0 until the first 429
	last      time.Time  // send time of the last 429 acted on
	resume    time.Time  // end of the pause it started
	bank      int        // tokens the server holds when that pause ends, if it said (X-RateLimit-Limit); -1 if not
	count     int        // admissions sent after last
	used      float64    // seconds of traffic at the pace since resume
	overshoot rate.Limit // pace reached ÷ limit, of the last probe that found the limit unchanged

	// Steering by X-RateLimit-Remaining: the last answer that carried it,
	// the admissions counted then, and the rate measured from the tokens
	// it reported (0 until measured; then the pace follows it, not the
	// phases above).
	seenAt  time.Time
	seenRem int
	seenN   int
	total   int // every admission so far
	steered rate.Limit

	// The interval that ended at last, which answers still on their way
	// when its 429 came back belong to.
	prevLast  time.Time
	prevCount int

	slots [10]int // admissions by send time, 100 ms slots over the last second
	slot  int64   // the newest slot, in 100 ms since the epoch
}

const (
	startRate     = 100 // requests a second
	startGain     = 10  // requests a second, for each admitted request
	holdMargin    = 0.03
	holdFor       = 7.0 // seconds of traffic
	probeDoubling = 1.0 // seconds of traffic
	risen         = 1.1 // a probe's sample this far above the estimate: the limit went up
	strongSample  = 10  // admissions
	maxCut        = 0.5
	adaptiveFloor = 0.05 // requests a second
	slotWidth     = 100 * time.Millisecond
	steerEvery    = 500 * time.Millisecond
	steerGain     = 0.25
	steerCut      = 0.5
)

func newAdaptiveLimiter(ceiling rate.Limit) *adaptiveLimiter {
	start := rate.Limit(startRate)
	if ceiling > 0 {
		start = ceiling
	}
	a := &adaptiveLimiter{ceiling: ceiling, pace: start, bank: -1}
	a.lim.Store(rate.NewLimiter(start, 1))
	return a
}

// limiter is the rate.Limiter that paces requests now.
func (a *adaptiveLimiter) limiter() *rate.Limiter { return a.lim.Load() }

// admitted counts a request sent at sent that Spotflow did not throttle,
// and moves the pace on.
func (a *adaptiveLimiter) admitted(now, sent time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.advance(now)
	if i := sent.UnixNano() / int64(slotWidth); i > a.slot-int64(len(a.slots)) && i <= a.slot {
		a.slots[i%int64(len(a.slots))]++
	}
	a.total++
	switch {
	case a.steered > 0:
		// The server's own figures pace it: see remaining.
	case a.est == 0:
		if a.ceiling == 0 {
			a.setPace(now, a.pace+startGain)
		}
	case !sent.After(a.last):
		// Late: it belongs to the interval that ended at the last 429.
		if !a.prevLast.IsZero() && sent.After(a.prevLast) && now.Before(a.resume) {
			a.prevCount++
			a.est = max(a.est, perSecond(a.prevCount, a.last.Sub(a.prevLast)))
			a.setPace(now, a.holdPace())
		}
	default:
		a.count++
		a.used += 1 / float64(a.pace)
		p := a.holdPace()
		if a.used > holdFor {
			p *= rate.Limit(math.Exp2((a.used - holdFor) / probeDoubling))
		}
		a.setPace(now, p)
	}
}

// remaining takes the X-RateLimit-Remaining (rem) and X-RateLimit-Limit
// (limit) of the answer to a request sent at sent, which was admitted
// (and counted). The tokens the server reports, with the admissions in
// between, measure its rate without waiting for its bank to run dry: over
// half a second or more, rate = (rem − rem before + admissions) ÷ time,
// exact while the bank neither spilled (full) nor ran dry. The pace then
// steers the bank to half full: the rate, 25 % faster when the bank is
// full (which also makes a full bank, where the measure only says "at
// least", a probe for a higher limit), 25 % slower when it is empty.
func (a *adaptiveLimiter) remaining(now, sent time.Time, rem, limit int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seenAt.IsZero() || sent.Before(a.seenAt) {
		a.seenAt, a.seenRem, a.seenN = sent, rem, a.total
		return
	}
	d := sent.Sub(a.seenAt)
	if d < steerEvery {
		return
	}
	r := perSecond(rem-a.seenRem+a.total-a.seenN, d)
	spilled := rem >= limit-1 || a.seenRem >= limit-1
	switch {
	case r <= 0:
	case a.steered == 0 || spilled:
		a.steered = max(r, a.steered*rate.Limit(btoi(!spilled))) // a full bank says "at least"
	default:
		a.steered = (a.steered + r) / 2
	}
	a.seenAt, a.seenRem, a.seenN = sent, rem, a.total
	if a.steered == 0 {
		return
	}
	a.est = a.steered
	// x is how far the bank is from half full, -1 (empty) to 1 (full).
	x := 2*float64(rem)/float64(limit) - 1
	m := 1 + steerGain*x
	if x < 0 {
		m = 1 + steerCut*x // below half, slow down harder: a drained bank holds everything until it is full
	}
	a.setPace(now, a.steered*rate.Limit(m))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// throttled takes a sign that the server's bank was empty when a request
// sent at sent arrived (a 429, or X-RateLimit-Remaining 0 on its answer),
// with the pause it asked for (0 if none), and paces at the new estimate.
func (a *adaptiveLimiter) throttled(now, sent time.Time, retryAfter time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sent.Before(a.resume) || !sent.After(a.last) {
		return // the same congestion as the last one acted on
	}
	a.advance(now)
	n := a.count
	var est rate.Limit
	if a.est == 0 {
		n = 0
		for _, k := range a.slots {
			n += k
		}
		est = rate.Limit(n)
	} else {
		est = perSecond(n, sent.Sub(a.last))
		if a.bank >= 0 && n > a.bank && sent.After(a.resume) {
			// The server said how full its bank would be when the last
			// pause ended: what it admitted since, less that bank, is its
			// rate, however long the pause lasted.
			est = perSecond(n-a.bank, sent.Sub(a.resume))
		}
		if a.used > holdFor && n >= strongSample {
			// A probe ended here.
			if est < a.est*risen {
				a.overshoot = a.pace / est
			} else if a.overshoot > 0 {
				est = max(est, a.pace/a.overshoot)
			}
		}
	}
	floor := rate.Limit(adaptiveFloor)
	if retryAfter > 0 {
		floor = max(floor, rate.Limit(1/retryAfter.Seconds()))
	}
	if n < strongSample {
		floor = max(floor, a.pace*maxCut)
	}
	a.est = min(max(est, floor), a.pace) // a 429 never raises the pace
	a.prevLast, a.prevCount = a.last, a.count
	// Without a pause to wait out (no Retry-After, or one not obeyed), the
	// 429s of the next second are still this congestion's.
	a.last, a.resume, a.count, a.used, a.bank = sent, now.Add(max(retryAfter, time.Second)), 0, 0, -1
	a.pace = a.holdPace()
	if a.ceiling > 0 {
		a.pace = min(a.pace, a.ceiling)
	}
	a.lim.Store(rate.NewLimiter(a.pace, 1))
}

// refills says that the server holds its requests until until, when its
// bank will hold bank tokens (X-RateLimit-Remaining 0 until
// X-RateLimit-Reset, when X-RateLimit-Limit are there again).
func (a *adaptiveLimiter) refills(until time.Time, bank int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !until.Before(a.resume) && !a.last.IsZero() {
		a.resume, a.bank = until, bank
	}
}

// perSecond is n admissions over d.
func perSecond(n int, d time.Duration) rate.Limit {
	if d <= 0 {
		return 0
	}
	return rate.Limit(float64(n) / d.Seconds())
}

func (a *adaptiveLimiter) holdPace() rate.Limit { return a.est * (1 + holdMargin) }

// setPace paces at p, or at the ceiling if that is lower.
func (a *adaptiveLimiter) setPace(now time.Time, p rate.Limit) {
	if a.ceiling > 0 {
		p = min(p, a.ceiling)
	}
	if p != a.pace {
		a.pace = p
		a.lim.Load().SetLimitAt(now, p)
	}
}

// advance moves the ring of slots to now, clearing slots that passed.
func (a *adaptiveLimiter) advance(now time.Time) {
	s := now.UnixNano() / int64(slotWidth)
	if s-a.slot >= int64(len(a.slots)) {
		a.slots = [len(a.slots)]int{}
		a.slot = s
		return
	}
	for a.slot < s {
		a.slot++
		a.slots[a.slot%int64(len(a.slots))] = 0
	}
}
