// Package redislimit paces the requests of many processes that share one
// Spotflow API key, through Redis.
//
// A per-process limiter (spotflowhttp.WithRateLimit) keeps one process under
// the account's limit, but ten processes each at the limit send ten times
// too much. A Limiter keeps its state in Redis instead, with GCRA (the
// generic cell rate algorithm, in the format of
// github.com/go-redis/redis_rate), so every process that uses the same name
// draws from one budget; and it shares Spotflow's requests to pause (a 429
// with Retry-After), so one process's 429 holds back all of them.
//
// Each Wait takes the next free slot of that budget in one atomic call to
// Redis and sleeps until it, so waiters are served in the order they ask,
// whichever process they are in, and together they use the whole rate.
// Plug it into the transport:
//
//	l, err := redislimit.New(rdb, "acct-3f2a", redis_rate.PerSecond(5))
//	if err != nil {
//		return err
//	}
//	client.Transport = spotflowhttp.NewTransport(nil, spotflowhttp.WithLimiter(l))
//
// When Redis cannot be reached, a Limiter does not fail requests: it paces
// them locally at a fraction of the limit (WithFallback) and tries Redis
// again at most once a second.
//
// No Wait lasts longer than a cap (WithMaxWait, 60 s by default): a longer
// cool-down or token wait fails at once with an error matching
// ErrWaitTooLong, which the transport reports as spotflowhttp.ErrRateLimit.
package redislimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"golang.org/x/time/rate"
)

// Defaults of the options.
const (
	DefaultFallback = 0.5
	DefaultTimeout  = 100 * time.Millisecond
	DefaultMaxWait  = 60 * time.Second // as spotflowhttp.DefaultMaxRetryAfter
)

// ErrWaitTooLong is matched (errors.Is) by the error of a Wait that would
// have waited longer than the cap set by WithMaxWait. The error's text says
// how long the wait would have been.
var ErrWaitTooLong = errors.New("redislimit: wait longer than the cap")

// probeInterval is how often a Limiter that lost Redis tries it again. Not
// on every request: with Redis gone, each try costs up to the timeout.
const probeInterval = time.Second

// Limiter is a spotflowhttp.CoolDownLimiter whose budget and cool-down live
// in Redis, shared by every Limiter, in any process, created with the same
// name and the same Redis.
//
// A Limiter is safe for concurrent use by multiple goroutines. It starts no
// goroutines: a waiting request sleeps on a timer in its own goroutine.
type Limiter struct {
	rdb      redis.UniversalClient
	limit    redis_rate.Limit
	name     string
	rateKey  string // the schedule, where redis_rate keeps it (see schedule.go)
	coolKey  string
	timeout  time.Duration
	maxWait  time.Duration
	fraction float64
	logger   *slog.Logger
	local    *rate.Limiter // used while Redis is unreachable

	// The time source; tests replace it.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	// admitted, when set (by tests), is told of each Wait that returns nil
	// after a reservation: its ctx, when it first asked Redis and its slot,
	// both by Redis's clock.
	admitted func(ctx context.Context, asked, slot time.Time)

	until     atomic.Int64 // end of the latest known cool-down, Unix nanoseconds; 0 for none
	down      atomic.Bool  // Redis is unreachable: pace locally
	mu        sync.Mutex
	nextProbe time.Time // while down, when Redis may be tried again
}

var _ spotflowhttp.CoolDownLimiter = (*Limiter)(nil)

// New returns a Limiter admitting limit.Rate requests per limit.Period, in
// bursts of at most limit.Burst, across all the Limiters that share rdb's
// Redis and name (see redis_rate.PerSecond and PerMinute; for Spotflow's
// live keys, Limit{Rate: 300, Period: time.Minute, Burst: 30}). All of them
// must use the same limit.
//
// name identifies the budget: one per Spotflow API key. Choose something
// that is not the secret, such as a hash of the key or the account's name;
// it appears in Redis keys and in log lines, never the key itself. The
// Limiter uses the keys "rate:spotflowhttp:{name}" and
// "spotflowhttp:{name}:cooldown"; the braces make them one hash slot in
// Redis Cluster.
//
// Each Redis call is bounded by the timeout (WithTimeout), through the
// context. A go-redis client only applies context deadlines to its
// connections when created with ContextTimeoutEnabled: true; without it, a
// Redis that accepts connections but stops answering can hold a request for
// the client's ReadTimeout. Set it.
//
// New returns an error, and no Limiter, if rdb is nil, name is empty, limit
// has a rate, period or burst below 1, or an option was given an invalid
// value; it does not dial Redis.
func New(rdb redis.UniversalClient, name string, limit redis_rate.Limit, opts ...Option) (*Limiter, error) {
	switch {
	case isNil(rdb):
		return nil, errors.New("redislimit: the Redis client is nil")
	case name == "":
		return nil, errors.New("redislimit: the name is empty; give one per Spotflow API key, such as a hash of the key")
	case limit.Rate < 1 || limit.Period <= 0 || limit.Burst < 1:
		return nil, fmt.Errorf("redislimit: invalid limit %v: rate, period and burst must be positive (see redis_rate.PerSecond)", limit)
	}
	cfg := config{fraction: DefaultFallback, timeout: DefaultTimeout, maxWait: DefaultMaxWait}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	perSecond := float64(limit.Rate) / limit.Period.Seconds()
	l := &Limiter{
		rdb:      rdb,
		limit:    limit,
		name:     name,
		rateKey:  "rate:spotflowhttp:{" + name + "}",
		coolKey:  "spotflowhttp:{" + name + "}:cooldown",
		timeout:  cfg.timeout,
		maxWait:  cfg.maxWait,
		fraction: cfg.fraction,
		logger:   cfg.logger,
		local:    rate.NewLimiter(rate.Limit(cfg.fraction*perSecond), max(1, int(cfg.fraction*float64(limit.Burst)))),
		now:      time.Now,
		sleep:    sleep,
	}
	if !honoursDeadlines(rdb) {
		l.logger.Warn("redislimit: the Redis client has ContextTimeoutEnabled false, so a Redis that stops answering can hold requests past the limiter's timeout",
			"name", name, "timeout", cfg.timeout)
	}
	return l, nil
}

// Wait blocks until one request may be sent: after any cool-down set by
// CoolDown (here or in another process sharing the name), and at its turn
// in the shared budget. It returns at once, without waiting, with an error
// matching ErrWaitTooLong if the wait would take longer in all than the cap
// (WithMaxWait), and with one matching context.DeadlineExceeded if it would
// pass ctx's deadline; and promptly, with an error wrapping ctx.Err(), if
// ctx is done first. The cap is checked first, as spotflowhttp does for
// WithMaxRetryAfter.
//
// Waiters are queued: each Wait takes, in one call to Redis, the next free
// slot of the schedule shared by every process, in the order Redis receives
// them, and sleeps until it. So under contention every waiter waits about
// as long as the others, and no slot is left unused between two waiters'
// polls: the processes together get the whole rate. A Wait that ends
// before its slot (ctx done) gives the slot back when no later one has
// been handed out since. A cool-down that starts while a Wait sleeps, by a
// CoolDown on this Limiter, sends it to the back of the queue after the
// cool-down; one set by another process is seen by the next Wait.
//
// While Redis is unreachable Wait paces locally instead, and returns no
// error for that; it then honours only the cool-downs this Limiter knows
// of: those passed to its CoolDown and those it last read from Redis. A
// Wait queued locally that finds Redis back when its local token comes
// gives the token back and queues in Redis, so that the local queue does
// not drain on top of the shared rate.
func (l *Limiter) Wait(ctx context.Context) error {
	w := &waiting{start: l.now()}
	for range maxRounds {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redislimit: %w", err)
		}
		now := l.now()
		cool := l.coolingFor(now)
		if !l.useRedis(now) {
			if cool > 0 {
				if err := l.pause(ctx, w, now, cool, "the cool-down to end"); err != nil {
					return err
				}
				continue
			}
			if back, err := l.waitLocal(ctx, w); err != nil || !back {
				return err
			}
			continue // Redis came back while this waited: queue there instead
		}
		maxDelay, byDeadline := l.patience(ctx, w, now)
		g, err := l.reserve(ctx, cool, maxDelay)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("redislimit: %w", cerr)
			}
			l.failed(err)
			continue // the next round paces locally
		}
		l.reachable()
		if w.asked == "" {
			w.asked = g.now
		}
		now = l.now() // the delays run from Redis's answer
		if g.cool > 0 {
			l.extend(now.Add(g.cool)) // so that it holds if Redis goes away
		}
		if !g.ok {
			return l.refuse(ctx, w, now, g, byDeadline)
		}
		at := now.Add(g.delay)
		if dl, ok := ctx.Deadline(); ok && at.After(dl) {
			// The round trip took what was left: Redis saw the slot
			// within the deadline, the local clock does not.
			l.giveBack(ctx, g)
			return fmt.Errorf("redislimit: waiting %v for a token would pass the context's deadline: %w", round(g.delay), context.DeadlineExceeded)
		}
		if g.delay > 0 {
			w.paused = true
			if err := l.sleep(ctx, g.delay); err != nil {
				l.giveBack(ctx, g)
				return fmt.Errorf("redislimit: waiting for a token: %w", err)
			}
		}
		if l.coolingFor(l.now()) > 0 {
			continue // a 429 came while this waited: its slot is spent, queue after the cool-down
		}
		if l.admitted != nil {
			l.admitted(ctx, redisTime(w.asked), redisTime(g.slot))
		}
		return nil
	}
	return fmt.Errorf("redislimit: still held back after %d cool-downs in %v: %w", maxRounds, round(l.now().Sub(w.start)), ErrWaitTooLong)
}

// maxRounds bounds the cool-downs one Wait goes through: each new 429 while
// it waits sends it round again, and each round waits at least until the
// cool-down ends, so the cap (WithMaxWait) is usually what ends it first.
const maxRounds = 64

// patience is how far ahead a slot may be for w: what is left of the cap,
// or until ctx's deadline if that is sooner (byDeadline).
func (l *Limiter) patience(ctx context.Context, w *waiting, now time.Time) (d time.Duration, byDeadline bool) {
	d = l.maxWait - now.Sub(w.start)
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) < d {
		return dl.Sub(now), true
	}
	return d, false
}

// refuse says why a slot was not taken: the cool-down or the queue was
// longer than w may wait.
func (l *Limiter) refuse(ctx context.Context, w *waiting, now time.Time, g grant, byDeadline bool) error {
	if g.cool > 0 {
		if err := l.tooLong(ctx, w, now, g.cool, "the cool-down to end"); err != nil {
			return err
		}
	}
	if err := l.tooLong(ctx, w, now, g.delay, "a token"); err != nil {
		return err
	}
	// Only rounding to microseconds lands here.
	if byDeadline {
		return fmt.Errorf("redislimit: waiting %v for a token would pass the context's deadline: %w", round(g.delay), context.DeadlineExceeded)
	}
	return fmt.Errorf("redislimit: waiting %v for a token would be over the cap of %v (WithMaxWait): %w", round(g.delay), l.maxWait, ErrWaitTooLong)
}

// CoolDown holds back, until the given time, Wait in every process that
// shares the Limiter's name: a spotflowhttp transport calls it on a 429 with
// Retry-After, or X-RateLimit-Remaining 0. A cool-down already set to end
// later is kept, never shortened. The time is also remembered locally, so
// it holds while Redis is unreachable. When it ends, the waiters leave one
// at a time at the shared rate, not in a burst: the budget counts as spent
// up to its end.
//
// CoolDown is best effort and reports no error. Its Redis call is bounded by
// the timeout but not cut short by ctx's cancellation: the request that saw
// the 429 may be over, and the other processes still need to know.
func (l *Limiter) CoolDown(ctx context.Context, until time.Time) {
	now := l.now()
	d := until.Sub(now)
	if d <= 0 {
		return
	}
	l.extend(until)
	if !l.useRedis(now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if err := coolDownScript.Run(ctx, l.rdb, []string{l.coolKey, l.rateKey}, int64(ms), until.UnixMilli(),
		l.limit.Burst, l.limit.Rate, l.limit.Period.Seconds()).Err(); err != nil {
		l.failed(l.timedOut(ctx, err))
		return
	}
	l.reachable()
}

// coolDownScript sets the cool-down unless one that ends later is already
// set, and drains the schedule up to its end. The key expires by itself.
// The test is on the time to live rather than on the stored time, so that
// processes whose clocks disagree still agree on when it ends: Redis's
// clock decides. The value, the end in Unix milliseconds by the setter's
// clock, is there for people reading Redis.
//
// KEYS[1] the cool-down key; KEYS[2] the schedule (see reserveScript).
// ARGV[1] its length in ms; ARGV[2] its end; ARGV[3] burst; ARGV[4] rate;
// ARGV[5] period in seconds.
var coolDownScript = redis.NewScript(`
redis.replicate_commands()
local want = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) >= want then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', want)
local interval = tonumber(ARGV[5]) / tonumber(ARGV[4])
local t = redis.call('TIME')
local now = (tonumber(t[1]) - ` + strconv.Itoa(epoch2017) + `) + tonumber(t[2]) / 1000000
local drained = now + want / 1000 + (tonumber(ARGV[3]) - 1) * interval
local tat = tonumber(redis.call('GET', KEYS[2]) or 0) or 0
if tat < drained then
  redis.call('SET', KEYS[2], string.format('%.17g', drained), 'PX', math.ceil((drained - now) * 1000))
end
return 1
`)

// timedOut says so when err is the timeout of a Redis call, for the log.
func (l *Limiter) timedOut(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %v: %w", l.timeout, err)
	}
	return err
}

// waitLocal takes a token from the local limiter, for when Redis is
// unreachable. If Redis is back by the time the token comes (back), the
// token is returned and the caller queues in Redis instead: the waiters
// queued locally during an outage would otherwise leave at the local pace
// on top of the shared one, for as long as that queue lasts.
func (l *Limiter) waitLocal(ctx context.Context, w *waiting) (back bool, err error) {
	now := l.now()
	r := l.local.ReserveN(now, 1) // burst is at least 1, so r.OK()
	d := r.DelayFrom(now)
	if d == 0 {
		return false, nil
	}
	if err := l.pause(ctx, w, now, d, "a local token"); err != nil {
		r.CancelAt(l.now())
		return false, err
	}
	if !l.down.Load() {
		r.CancelAt(l.now())
		return true, nil
	}
	return false, nil
}

// waiting is one call of Wait, for the cap.
type waiting struct {
	start  time.Time
	paused bool   // it has slept already
	asked  string // Redis's time at its first answer, for tests (admitted)
}

// pause sleeps for d, or fails at once if that would make the Wait last
// longer than the cap, or pass ctx's deadline. The cap is on the whole
// Wait, not on each pause: a Wait can pause more than once.
func (l *Limiter) pause(ctx context.Context, w *waiting, now time.Time, d time.Duration, what string) error {
	if err := l.tooLong(ctx, w, now, d, what); err != nil {
		return err
	}
	w.paused = true
	if err := l.sleep(ctx, d); err != nil {
		return fmt.Errorf("redislimit: waiting for %s: %w", what, err)
	}
	return nil
}

// tooLong returns the error for waiting d more for what, if that would
// make w last longer than the cap or pass ctx's deadline, and nil if not.
func (l *Limiter) tooLong(ctx context.Context, w *waiting, now time.Time, d time.Duration, what string) error {
	if total := now.Add(d).Sub(w.start); total > l.maxWait {
		if w.paused {
			return fmt.Errorf("redislimit: waiting %v more for %s, after %v, would take %v, over the cap of %v (WithMaxWait): %w",
				round(d), what, round(now.Sub(w.start)), round(total), l.maxWait, ErrWaitTooLong)
		}
		return fmt.Errorf("redislimit: waiting %v for %s would be over the cap of %v (WithMaxWait): %w",
			round(d), what, l.maxWait, ErrWaitTooLong)
	}
	if dl, ok := ctx.Deadline(); ok && now.Add(d).After(dl) {
		return fmt.Errorf("redislimit: waiting %v for %s would pass the context's deadline: %w", round(d), what, context.DeadlineExceeded)
	}
	return nil
}

// coolingFor returns how long the known cool-down still runs.
func (l *Limiter) coolingFor(now time.Time) time.Duration {
	u := l.until.Load()
	if u == 0 {
		return 0
	}
	d := time.Duration(u - now.UnixNano())
	if d <= 0 {
		l.until.CompareAndSwap(u, 0) // over: back to the fast path
		return 0
	}
	return d
}

// extend makes the known cool-down last at least until t.
func (l *Limiter) extend(t time.Time) {
	u := t.UnixNano()
	for {
		cur := l.until.Load()
		if cur >= u || l.until.CompareAndSwap(cur, u) {
			return
		}
	}
}

// useRedis reports whether to ask Redis now. While Redis is down, it says
// yes to one caller a second, the probe.
func (l *Limiter) useRedis(now time.Time) bool {
	if !l.down.Load() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.nextProbe) {
		return false
	}
	l.nextProbe = now.Add(probeInterval)
	return true
}

// failed switches to local pacing after a Redis call failed, and says so
// once per outage.
func (l *Limiter) failed(err error) {
	l.mu.Lock()
	l.nextProbe = l.now().Add(probeInterval)
	l.mu.Unlock()
	if !l.down.Swap(true) {
		l.logger.Warn("redislimit: Redis unreachable, falling back to a local limiter",
			"name", l.name, "fraction", l.fraction, "rate", float64(l.local.Limit()),
			"burst", l.local.Burst(), "retry", probeInterval, "err", err)
	}
}

// reachable switches back to Redis after a Redis call succeeded.
func (l *Limiter) reachable() {
	if l.down.Load() && l.down.CompareAndSwap(true, false) {
		l.logger.Info("redislimit: Redis reachable again, back to the shared limit", "name", l.name)
	}
}

// round shortens a duration for an error message: 9m59.999s, not
// 9m59.998765432s.
func round(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Millisecond)
	}
	return d
}

// isNil reports whether rdb is nil, or a nil pointer (a *redis.Client
// variable never set) whose methods would panic.
func isNil(rdb redis.UniversalClient) bool {
	if rdb == nil {
		return true
	}
	v := reflect.ValueOf(rdb)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}

// honoursDeadlines reports whether rdb applies context deadlines to its
// connections, for the clients whose options can be read.
func honoursDeadlines(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
