package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp/redislimit"
)

// limiters returns n Limiters sharing t's name, each with its own Redis
// client (its own connections), as n processes would have.
func limiters(t *testing.T, rs *redisServer, n int, limit redis_rate.Limit, opts ...redislimit.Option) []*redislimit.Limiter {
	t.Helper()
	var ls []*redislimit.Limiter
	for range n {
		ls = append(ls, newLimiter(t, rs.client(t), t.Name(), limit, append([]redislimit.Option{patient}, opts...)...))
	}
	return ls
}

// slotsOf records the slots of the Waits of ls that return nil; the
// function it returns gives those so far, in order.
func slotsOf(ls []*redislimit.Limiter) func() []time.Time {
	var (
		mu    sync.Mutex
		slots []time.Time
	)
	for _, l := range ls {
		redislimit.OnAdmitted(l, func(_ context.Context, _, slot time.Time) {
			mu.Lock()
			defer mu.Unlock()
			slots = append(slots, slot)
		})
	}
	return func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		s := slices.Clone(slots)
		slices.SortFunc(s, time.Time.Compare)
		return s
	}
}

// admission is one Wait that returned nil.
type admission struct {
	waiter int
	asked  time.Time     // when it first asked Redis, by Redis's clock
	slot   time.Time     // its slot, by Redis's clock
	woke   time.Time     // when Wait returned
	waited time.Duration // how long Wait took
}

type admittedKey struct{}

// contend has waiters goroutines per Limiter call Wait in a loop, with
// nothing in between, until run is over, and returns every admission in
// the order of their slots. Each Limiter has its own Redis client, as a
// process would.
func contend(t *testing.T, ls []*redislimit.Limiter, waiters int, run time.Duration) []admission {
	t.Helper()
	var (
		mu  sync.Mutex
		out []admission
		wg  sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), run)
	defer cancel()
	for i, l := range ls {
		redislimit.OnAdmitted(l, func(ctx context.Context, asked, slot time.Time) {
			a := ctx.Value(admittedKey{}).(*admission) // the waiter's own, in its goroutine
			a.asked, a.slot = asked, slot
		})
		for j := range waiters {
			id := i*waiters + j
			wg.Go(func() {
				var a admission
				ctx := context.WithValue(ctx, admittedKey{}, &a)
				for ctx.Err() == nil {
					start := time.Now()
					if err := l.Wait(ctx); err != nil {
						// The next slot comes after the end of the run.
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("waiter %d: %v", id, err)
						}
						return
					}
					a.waiter, a.woke = id, time.Now()
					a.waited = a.woke.Sub(start)
					mu.Lock()
					out = append(out, a)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b admission) int { return a.slot.Compare(b.slot) })
	return out
}

// within counts the admissions whose time, by at, is in [from, from+d).
func within(as []admission, at func(admission) time.Time, from time.Time, d time.Duration) int {
	n := 0
	for _, a := range as {
		if t := at(a); !t.Before(from) && t.Before(from.Add(d)) {
			n++
		}
	}
	return n
}

// Processes sharing a budget, each pushing as hard as it can, together get
// the whole rate and no more: within 1 %, counted by the slots Redis handed
// out. The window starts after the first slot and ends before the run
// does, so it measures the steady schedule. Counting by slot rather than
// by when each Wait returned keeps the figure exact on a loaded machine,
// where goroutines wake late; that they do not wake early, nor late by
// much, is checked apart. Burst 1 leaves nothing to catch up with: a slot
// nobody asked for in time is lost, as it was when waiters polled (−11 %
// here). 64 waiters keep 640 ms of slots reserved ahead, so a stall of the
// whole machine shorter than that loses nothing.
func TestScheduleAggregateRate(t *testing.T) {
	rs := needRedis(t)
	const (
		rate   = 100
		window = 3 * time.Second
	)
	limit := redis_rate.Limit{Rate: rate, Period: time.Second, Burst: 1}
	for _, tt := range []struct{ procs, waiters int }{{4, 16}, {16, 4}} {
		t.Run(fmt.Sprintf("%d processes", tt.procs), func(t *testing.T) {
			as := contend(t, limiters(t, rs, tt.procs, limit), tt.waiters, window+time.Second) // 0.5 s each side
			if len(as) == 0 {
				t.Fatal("no admissions")
			}
			from := as[0].slot.Add(500 * time.Millisecond)
			got := within(as, func(a admission) time.Time { return a.slot }, from, window)
			want := int(rate * window.Seconds())
			woke := within(as, func(a admission) time.Time { return a.woke }, from, window)
			var late []time.Duration
			for _, a := range as {
				late = append(late, a.woke.Sub(a.slot))
				// Redis and the test share this machine's clock.
				if a.woke.Before(a.slot) {
					t.Errorf("waiter %d returned at %v, before its slot at %v", a.waiter, a.woke, a.slot)
				}
			}
			slices.Sort(late)
			median := late[len(late)/2]
			t.Logf("%d processes × %d waiters, %v at %d/s: %d slots in the window (want %d, %+.2f %%), %d Waits returned in it (%+.2f %%); lateness median %v, p99 %v, max %v",
				tt.procs, tt.waiters, window, rate, got, want, pct(got, want), woke, pct(woke, want),
				median.Round(time.Microsecond), late[len(late)*99/100].Round(time.Microsecond), late[len(late)-1].Round(time.Microsecond))
			checkRate(t, as, time.Second/rate, from, window, want)
			if median > 50*time.Millisecond {
				t.Errorf("Waits returned %v after their slots (median), want about a round trip to Redis", median)
			}
		})
	}
}

func pct(got, want int) float64 { return 100 * float64(got-want) / float64(want) }

// idleSlots counts the slots of [from, from+d) that went unused because no
// Wait asked for them, as when the machine stalls for longer than the
// waiters have reserved ahead: with burst 1, a slot nobody asks for in time
// is lost, by design. Slots are handed out in order, each asker getting the
// later of now and the schedule's next, so in a gap between consecutive
// slots longer than an interval, the Wait that ended it must have been
// given its slot as soon as it asked: then nobody asked during the gap,
// and its slots count as idle. A gap ended by a Wait that asked earlier
// and was given a later slot is the limiter's doing: unexplained.
func idleSlots(as []admission, interval time.Duration, from time.Time, d time.Duration) (idle, unexplained int) {
	to := from.Add(d)
	for i := 1; i < len(as); i++ {
		prev, cur := as[i-1], as[i]
		if prev.slot.Before(from) || !cur.slot.Before(to) {
			continue
		}
		gap := cur.slot.Sub(prev.slot)
		if gap < interval*3/2 {
			continue
		}
		if cur.slot.Sub(cur.asked) > interval/2 {
			unexplained++
			continue
		}
		idle += int((gap+interval/2)/interval) - 1
	}
	return idle, unexplained
}

// idleSlots counts a gap as idle only when the Wait that ended it was
// given its slot as it asked.
func TestIdleSlots(t *testing.T) {
	const iv = 10 * time.Millisecond
	t0 := time.Unix(1_700_000_000, 0)
	at := func(n int) time.Time { return t0.Add(time.Duration(n) * iv) }
	// Slots 0–4, then nothing until 9 (slots 5–8 unused), then 10.
	var as []admission
	for _, n := range []int{0, 1, 2, 3, 4, 9, 10} {
		as = append(as, admission{asked: at(n), slot: at(n)})
	}
	as[0].asked = at(-5) // asked long before, as waiters queued ahead do
	if idle, bad := idleSlots(as, iv, at(0), 11*iv); idle != 4 || bad != 0 {
		t.Errorf("nobody asked during the gap: idle %d, unexplained %d; want 4, 0", idle, bad)
	}
	as[5].asked = at(6) // asked inside the gap, given a slot 30 ms later
	if idle, bad := idleSlots(as, iv, at(0), 11*iv); idle != 0 || bad != 1 {
		t.Errorf("a Wait asked during the gap: idle %d, unexplained %d; want 0, 1", idle, bad)
	}
}

// checkRate fails t unless the slots in the window are within 1 % of want
// once the idle slots (see idleSlots) are counted as used, none is
// unexplained, and there are no more than want + 1 %.
func checkRate(t *testing.T, as []admission, interval time.Duration, from time.Time, window time.Duration, want int) {
	t.Helper()
	got := within(as, func(a admission) time.Time { return a.slot }, from, window)
	idle, unexplained := idleSlots(as, interval, from, window)
	t.Logf("%d slots in %v (want %d, %+.2f %%); %d left idle because nobody asked (a stalled machine), %+.2f %% counting them",
		got, window, want, pct(got, want), idle, pct(got+idle, want))
	if d := pct(got, want); d > 1 {
		t.Errorf("%d slots in %v, want at most %d + 1 %%", got, window, want)
	}
	if d := pct(got+idle, want); d < -1 || d > 1 {
		t.Errorf("%d slots in %v and %d idle, want %d ± 1 %%", got, window, idle, want)
	}
	if unexplained > 0 {
		t.Errorf("%d gaps in the schedule ended by a Wait that had asked during the gap", unexplained)
	}
}

// Eight waiters contending for one budget are served in turn: none waits
// more than twice as long as the mean. Before the schedule was queued,
// waiters polled Redis and whoever asked first after a token freed up got
// it: with these figures the mean was about 200 ms and the longest wait
// 1.4 s. The assertion is on each Wait as Redis saw it, from its first
// call to its slot, which is what the limiter decides; how long the caller
// waited, which a loaded machine stretches, is logged.
func TestScheduleFairness(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.Limit{Rate: 40, Period: time.Second, Burst: 2}
	as := contend(t, limiters(t, rs, 4, limit), 2, 3*time.Second)
	if len(as) < 40 {
		t.Fatalf("%d admissions in 3 s at 40/s, want about 120", len(as))
	}
	var sum, longest, wallSum, wallLongest time.Duration
	per := map[int]int{}
	for _, a := range as {
		d := a.slot.Sub(a.asked)
		sum += d
		longest = max(longest, d)
		wallSum += a.waited
		wallLongest = max(wallLongest, a.waited)
		per[a.waiter]++
	}
	mean := sum / time.Duration(len(as))
	wallMean := wallSum / time.Duration(len(as))
	t.Logf("8 waiters, %d admissions in 3 s at 40/s: by the schedule, mean wait %v, longest %v (%.2f× the mean); as the callers saw it, mean %v, longest %v (%.2f×); per waiter %v",
		len(as), mean.Round(time.Millisecond), longest.Round(time.Millisecond), float64(longest)/float64(mean),
		wallMean.Round(time.Millisecond), wallLongest.Round(time.Millisecond), float64(wallLongest)/float64(wallMean), per)
	if longest > 2*mean {
		t.Errorf("longest wait %v, more than twice the mean %v", longest.Round(time.Millisecond), mean.Round(time.Millisecond))
	}
}

// A Wait cancelled before its slot gives the slot back, so the next Wait
// gets it rather than the one after.
func TestCancelledWaitGivesItsSlotBack(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.Limit{Rate: 1, Period: time.Second, Burst: 1}
	ls := limiters(t, rs, 2, limit)
	admitted := slotsOf(ls)
	if err := ls[0].Wait(context.Background()); err != nil { // the slot now
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := ls[0].Wait(ctx); !errors.Is(err, context.Canceled) { // the slot at 1 s
		t.Fatalf("Wait = %v, want an error matching context.Canceled", err)
	}
	if err := ls[1].Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	slots := admitted()
	if len(slots) != 2 {
		t.Fatalf("%d admissions, want 2", len(slots))
	}
	// Kept, the slot at 1 s would be lost and the next at 2 s.
	if d := slots[1].Sub(slots[0]); d < time.Second-time.Millisecond || d > time.Second+time.Millisecond {
		t.Errorf("the Wait after the cancelled one got the slot at %v, want the one given back at 1 s", d)
	}
}

// A slot with another queued behind it is not given back: the later
// waiter keeps its slot, and nobody gets the same one.
func TestGiveBackKeepsLaterSlots(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.Limit{Rate: 5, Period: time.Second, Burst: 1}
	ls := limiters(t, rs, 3, limit)
	admitted := slotsOf(ls)
	rdb := rs.client(t)
	if err := ls[0].Wait(context.Background()); err != nil { // now
		t.Fatal(err)
	}
	schedule := scheduleMoved(t, rdb, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := make(chan error, 1)
	go func() { cancelled <- ls[1].Wait(ctx) }() // 200 ms
	schedule = scheduleMoved(t, rdb, schedule)
	queued := make(chan error, 1)
	go func() { queued <- ls[2].Wait(context.Background()) }() // 400 ms
	scheduleMoved(t, rdb, schedule)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want an error matching context.Canceled", err)
	}
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if err := ls[0].Wait(context.Background()); err != nil { // 600 ms, not 200 ms
		t.Fatal(err)
	}
	slots := admitted()
	if len(slots) != 3 {
		t.Fatalf("%d admissions, want 3", len(slots))
	}
	for i, want := range []time.Duration{400 * time.Millisecond, 600 * time.Millisecond} {
		if d := slots[i+1].Sub(slots[0]); d < want-time.Millisecond || d > want+time.Millisecond {
			t.Errorf("admission %d at %v, want %v", i+2, d, want)
		}
	}
}

// scheduleMoved waits, at most 5 s, until the shared schedule of t's name
// (where New's documentation says it is) differs from was, and returns it:
// a Wait in another goroutine has taken its slot.
func scheduleMoved(t *testing.T, rdb *redis.Client, was string) string {
	t.Helper()
	key := "rate:spotflowhttp:{" + t.Name() + "}"
	for range 500 {
		v, err := rdb.Get(context.Background(), key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		if v != was {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no Wait took a slot within 5 s")
	return ""
}

// A slot further away than the cap is refused at once and not taken.
func TestSlotOverTheCapIsNotTaken(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.Limit{Rate: 1, Period: time.Second, Burst: 1}
	capped := newLimiter(t, rs.client(t), t.Name(), limit, patient, redislimit.WithMaxWait(500*time.Millisecond))
	other := newLimiter(t, rs.client(t), t.Name(), limit, patient)
	admitted := slotsOf([]*redislimit.Limiter{capped, other})
	ctx := context.Background()
	if err := capped.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := capped.Wait(ctx)
	if !errors.Is(err, redislimit.ErrWaitTooLong) || !strings.Contains(err.Error(), "for a token would be over the cap of 500ms") {
		t.Fatalf("Wait = %v, want ErrWaitTooLong for a token over the 500 ms cap", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Wait failed after %v, want at once", d)
	}
	// Had the refused Wait taken the slot at 1 s, this one would get 2 s.
	if err := other.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	slots := admitted()
	if len(slots) != 2 {
		t.Fatalf("%d admissions, want 2", len(slots))
	}
	if d := slots[1].Sub(slots[0]); d < time.Second-time.Millisecond || d > time.Second+time.Millisecond {
		t.Errorf("the next Wait got the slot at %v, want 1 s", d)
	}
}

// When a cool-down ends, the waiters held back by it leave one interval
// apart, not in a burst, whatever the burst of the limit.
func TestCoolDownEndsOneAtATime(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.Limit{Rate: 20, Period: time.Second, Burst: 10}
	ls := limiters(t, rs, 5, limit)
	admitted := slotsOf(ls)
	var wg sync.WaitGroup
	end := time.Now().Add(300 * time.Millisecond)
	ls[0].CoolDown(context.Background(), end)
	for _, l := range ls {
		wg.Go(func() {
			if err := l.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	slots := admitted()
	for i, s := range slots {
		if s.Before(end.Add(-time.Millisecond)) {
			t.Errorf("admission %d at %v, before the cool-down ended", i, s.Sub(end))
		}
		if i > 0 && s.Sub(slots[i-1]) < 49*time.Millisecond {
			t.Errorf("admissions %d and %d %v apart, want 50 ms", i-1, i, s.Sub(slots[i-1]))
		}
	}
}

// A Wait asleep until its slot when a 429 comes in (a CoolDown on its
// Limiter) does not go at its slot but after the cool-down.
func TestCoolDownDuringTheWait(t *testing.T) {
	rs := needRedis(t)
	l := newLimiter(t, rs.client(t), t.Name(), redis_rate.Limit{Rate: 2, Period: time.Second, Burst: 1}, patient)
	ctx := context.Background()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx) }() // its slot is at 500 ms
	time.Sleep(100 * time.Millisecond)
	l.CoolDown(ctx, start.Add(time.Second))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The upper bound only catches a Wait that went round twice.
	if d := time.Since(start); d < 990*time.Millisecond || d > 3*time.Second {
		t.Errorf("Wait returned after %v, want when the 1 s cool-down ends", d)
	}
}
