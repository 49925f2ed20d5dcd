// Package redislimit paces the requests of many processes that share one
// Spotflow API key, through Redis.
//
// A per-process limiter (spotflowhttp.WithRateLimit) keeps one process under
// the account's limit, but ten processes each at the limit send ten times
// too much. A Limiter keeps its state in Redis instead, with GCRA (the
// generic cell rate algorithm of github.com/go-redis/redis_rate), so every
// process that uses the same name draws from one budget; and it shares
// Spotflow's requests to pause (a 429 with Retry-After), so one process's
// 429 holds back all of them. Plug it into the transport:
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
	rateKey  string // as given to redis_rate, which prefixes "rate:"
	coolKey  string
	timeout  time.Duration
	maxWait  time.Duration
	fraction float64
	logger   *slog.Logger
	local    *rate.Limiter // used while Redis is unreachable

	// The time source; tests replace it.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

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
		rateKey:  "spotflowhttp:{" + name + "}",
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
// CoolDown (here or in another process sharing the name), and once the
// shared budget has a token for it. It returns at once, without waiting,
// with an error matching ErrWaitTooLong if the wait would take longer in all
// than the cap (WithMaxWait), and with one matching
// context.DeadlineExceeded if it would pass ctx's deadline; and promptly,
// with an error wrapping ctx.Err(), if ctx is done first. The cap is checked
// first, as spotflowhttp does for WithMaxRetryAfter.
//
// While Redis is unreachable Wait paces locally instead, and returns no
// error for that; it then honours only the cool-downs this Limiter knows
// of: those passed to its CoolDown and those it last read from Redis.
//
// Waiters are not queued: when a token frees up, whichever asks Redis first
// gets it. The rate holds, but under contention some waits run well past
// the average (with 8 waiters at 40 a second, 200 ms on average, the
// longest seen was about 1.4 s).
func (l *Limiter) Wait(ctx context.Context) error {
	w := &waiting{start: l.now()}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("redislimit: %w", err)
		}
		now := l.now()
		if d := l.coolingFor(now); d > 0 {
			if err := l.pause(ctx, w, now, d, "the cool-down to end"); err != nil {
				return err
			}
			continue
		}
		if !l.useRedis(now) {
			return l.waitLocal(ctx, w)
		}
		res, cool, err := l.allow(ctx)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("redislimit: %w", cerr)
			}
			l.failed(err)
			return l.waitLocal(ctx, w)
		}
		l.reachable()
		now = l.now()
		if cool > 0 {
			// A token the script just granted is spent for nothing; the
			// bucket drained during a cool-down spreads the restart instead
			// of letting every process burst at its end.
			l.extend(now.Add(cool))
			continue
		}
		if res.Allowed > 0 {
			return nil
		}
		if err := l.pause(ctx, w, now, max(res.RetryAfter, time.Millisecond), "a token"); err != nil {
			return err
		}
	}
}

// CoolDown holds back, until the given time, Wait in every process that
// shares the Limiter's name: a spotflowhttp transport calls it on a 429 with
// Retry-After, or X-RateLimit-Remaining 0. A cool-down already set to end
// later is kept, never shortened. The time is also remembered locally, so
// it holds while Redis is unreachable.
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
	if err := coolDownScript.Run(ctx, l.rdb, []string{l.coolKey}, int64(ms), until.UnixMilli()).Err(); err != nil {
		l.failed(l.timedOut(ctx, err))
		return
	}
	l.reachable()
}

// coolDownScript sets the cool-down unless one that ends later is already
// set. The key expires by itself. The test is on the time to live rather
// than on the stored time, so that processes whose clocks disagree still
// agree on when it ends: Redis's clock decides. The value, the end in Unix
// milliseconds by the setter's clock, is there for people reading Redis.
//
// KEYS[1] the cool-down key; ARGV[1] its length in ms; ARGV[2] its end.
var coolDownScript = redis.NewScript(`
local want = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < want then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', want)
  return 1
end
return 0
`)

// allow asks Redis for a token and for the time left of the shared
// cool-down, in one round trip.
func (l *Limiter) allow(ctx context.Context) (*redis_rate.Result, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	p := &pipelined{UniversalClient: l.rdb, coolKey: l.coolKey}
	res, err := redis_rate.NewLimiter(p).Allow(ctx, l.rateKey, l.limit)
	if err != nil {
		return nil, 0, l.timedOut(ctx, err)
	}
	if p.ttl == nil { // redis_rate ran its script some other way
		p.ttl = l.rdb.PTTL(ctx, l.coolKey)
	}
	ttl, err := p.ttl.Result()
	if err != nil {
		return nil, 0, l.timedOut(ctx, err)
	}
	return res, ttl, nil // ttl is negative when there is no cool-down
}

// timedOut says so when err is the timeout of a Redis call, for the log.
func (l *Limiter) timedOut(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %v: %w", l.timeout, err)
	}
	return err
}

// pipelined is the Redis client as redis_rate sees it: each script it runs
// is sent in one pipeline with a PTTL of the cool-down key, which saves a
// round trip on every Wait.
type pipelined struct {
	redis.UniversalClient
	coolKey string
	ttl     *redis.DurationCmd
}

func (p *pipelined) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.with(ctx, func(pipe redis.Pipeliner) *redis.Cmd { return pipe.EvalSha(ctx, sha1, keys, args...) })
}

func (p *pipelined) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.with(ctx, func(pipe redis.Pipeliner) *redis.Cmd { return pipe.Eval(ctx, script, keys, args...) })
}

func (p *pipelined) with(ctx context.Context, eval func(redis.Pipeliner) *redis.Cmd) *redis.Cmd {
	pipe := p.UniversalClient.Pipeline()
	p.ttl = pipe.PTTL(ctx, p.coolKey)
	cmd := eval(pipe)
	_, _ = pipe.Exec(ctx) // each command carries its own error
	return cmd
}

// waitLocal takes a token from the local limiter, for when Redis is
// unreachable.
func (l *Limiter) waitLocal(ctx context.Context, w *waiting) error {
	now := l.now()
	r := l.local.ReserveN(now, 1) // burst is at least 1, so r.OK()
	d := r.DelayFrom(now)
	if d == 0 {
		return nil
	}
	if err := l.pause(ctx, w, now, d, "a local token"); err != nil {
		r.CancelAt(l.now())
		return err
	}
	return nil
}

// waiting is one call of Wait, for the cap.
type waiting struct {
	start  time.Time
	paused bool // it has slept already
}

// pause sleeps for d, or fails at once if that would make the Wait last
// longer than the cap, or pass ctx's deadline. The cap is on the whole
// Wait, not on each pause: under contention a Wait can pause many times.
func (l *Limiter) pause(ctx context.Context, w *waiting, now time.Time, d time.Duration, what string) error {
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
	w.paused = true
	if err := l.sleep(ctx, d); err != nil {
		return fmt.Errorf("redislimit: waiting for %s: %w", what, err)
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
