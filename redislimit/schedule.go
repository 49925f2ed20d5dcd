package redislimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The shared schedule is GCRA's theoretical arrival time (TAT), stored as
// github.com/go-redis/redis_rate stores it, in the same key and unit
// (seconds since 2017-01-01 UTC by Redis's clock), so that processes still
// on an older redislimit, which asked redis_rate for a token, draw from the
// same budget during a rolling upgrade.
//
// Unlike redis_rate's Allow, which answers "not yet, ask again in d" and
// leaves every refused caller to poll, reserveScript hands each caller the
// next free slot at once and moves the schedule past it, so callers are
// served in the order Redis runs their scripts, and no slot falls between
// two polls unclaimed.

// epoch2017 is redis_rate's epoch: seconds since then keep a double's
// precision well under a microsecond until 2048.
const epoch2017 = 1483228800

// reserveScript takes the next free slot of the schedule, after any
// cool-down, unless it is further away than the caller will wait.
//
// KEYS[1] the schedule; KEYS[2] the cool-down key.
// ARGV[1] burst; ARGV[2] rate; ARGV[3] period in seconds;
// ARGV[4] a cool-down known to the caller, in µs from now (0 for none);
// ARGV[5] the longest delay the caller accepts, in µs.
//
// It returns {granted (0 or 1), delay to the slot in µs, cool-down left in
// µs, Redis's now} and, when granted, the schedule's new TAT and the slot.
// Times are strings that round-trip exactly (%.17g).
//
// During a cool-down the schedule is drained up to its end (the bucket is
// empty when the cool-down ends), so that the waiters leave one interval
// apart, not in a burst into the server that has just refused.
var reserveScript = redis.NewScript(`
redis.replicate_commands()
local burst = tonumber(ARGV[1])
local interval = tonumber(ARGV[3]) / tonumber(ARGV[2])
local t = redis.call('TIME')
local now = (tonumber(t[1]) - ` + strconv.Itoa(epoch2017) + `) + tonumber(t[2]) / 1000000
local start = now + tonumber(ARGV[4]) / 1000000
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then
  start = math.max(start, now + pttl / 1000)
end
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if start > now then
  tat = math.max(tat, start + (burst - 1) * interval)
end
tat = math.max(tat, now) + interval
local slot = math.max(tat - burst * interval, start)
local delay = math.ceil((slot - now) * 1000000)
local cool = math.ceil((start - now) * 1000000)
local at = string.format('%.17g', now)
if delay > tonumber(ARGV[5]) then
  return {0, delay, cool, at}
end
local v = string.format('%.17g', tat)
redis.call('SET', KEYS[1], v, 'PX', math.ceil((tat - now) * 1000))
return {1, delay, cool, at, v, string.format('%.17g', slot)}
`)

// giveBackScript returns a slot to the schedule if no later slot has been
// handed out since and the slot has not come yet. A slot with others
// queued behind it stays spent: moving theirs forward would break the
// promise each was given.
//
// KEYS[1] the schedule. ARGV[1] the TAT the reservation left; ARGV[2] its
// slot; ARGV[3] rate; ARGV[4] period in seconds.
var giveBackScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = (tonumber(t[1]) - ` + strconv.Itoa(epoch2017) + `) + tonumber(t[2]) / 1000000
if now >= tonumber(ARGV[2]) then
  return 0
end
local tat = tonumber(ARGV[1]) - tonumber(ARGV[4]) / tonumber(ARGV[3])
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil((tat - now) * 1000))
end
return 1
`)

// grant is reserveScript's answer.
type grant struct {
	ok    bool
	delay time.Duration // from Redis's now to the slot
	cool  time.Duration // the cool-down left, from Redis's now; ≤ 0 for none
	now   string        // Redis's now, in redis_rate's unit
	tat   string        // the schedule as this grant left it, to give it back
	slot  string        // the slot, in redis_rate's unit
}

// reserve asks Redis for the next free slot, after a cool-down of at least
// cool (known here, perhaps not yet in Redis), and no more than maxDelay
// away; a slot further away is not taken.
func (l *Limiter) reserve(ctx context.Context, cool, maxDelay time.Duration) (grant, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	v, err := reserveScript.Run(ctx, l.rdb, []string{l.rateKey, l.coolKey},
		l.limit.Burst, l.limit.Rate, l.limit.Period.Seconds(),
		max(cool, 0).Microseconds(), max(maxDelay, 0).Microseconds()).Slice()
	if err != nil {
		return grant{}, l.timedOut(ctx, err)
	}
	if len(v) >= 4 {
		ok, ok1 := v[0].(int64)
		delay, ok2 := v[1].(int64)
		cool, ok3 := v[2].(int64)
		now, ok4 := v[3].(string)
		if ok1 && ok2 && ok3 && ok4 {
			g := grant{ok: ok == 1, delay: time.Duration(delay) * time.Microsecond, cool: time.Duration(cool) * time.Microsecond, now: now}
			if !g.ok {
				return g, nil
			}
			if len(v) == 6 {
				g.tat, ok1 = v[4].(string)
				g.slot, ok2 = v[5].(string)
				if ok1 && ok2 {
					return g, nil
				}
			}
		}
	}
	return grant{}, fmt.Errorf("unexpected answer from the reserve script: %v", v)
}

// giveBack returns g's slot if it still can (see giveBackScript). It is
// best effort, bounded by the timeout, and not cut short by ctx, which is
// usually what ended the Wait.
func (l *Limiter) giveBack(ctx context.Context, g grant) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	_ = giveBackScript.Run(ctx, l.rdb, []string{l.rateKey}, g.tat, g.slot, l.limit.Rate, l.limit.Period.Seconds()).Err()
}

// redisTime converts a time in redis_rate's unit, as the scripts return
// it, to a time.Time; the zero Time if it does not parse.
func redisTime(s string) time.Time {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}
	}
	sec := math.Floor(f)
	return time.Unix(epoch2017+int64(sec), int64((f-sec)*1e9))
}
