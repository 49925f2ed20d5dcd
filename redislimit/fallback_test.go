package redislimit

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// fakeClock is a time source whose Sleep moves time on at once.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return nil
}

// attempts counts the commands and pipelines a client tries to send.
type attempts struct {
	mu sync.Mutex
	n  int
}

func (a *attempts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func (a *attempts) DialHook(next redis.DialHook) redis.DialHook { return next }

func (a *attempts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		a.mu.Lock()
		a.n++
		a.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (a *attempts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		a.mu.Lock()
		a.n++
		a.mu.Unlock()
		return next(ctx, cmds)
	}
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// unreachable returns a client whose every dial is refused at once, and
// the count of its tries.
func unreachable(t *testing.T) (*redis.Client, *attempts) {
	rdb := redis.NewClient(&redis.Options{
		Addr: "redis.invalid:6379",
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("dial tcp: connection refused")
		},
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { rdb.Close() })
	a := &attempts{}
	rdb.AddHook(a)
	return rdb, a
}

func newFake(t *testing.T, limit redis_rate.Limit, opts ...Option) (*Limiter, *fakeClock, *attempts, *bytes.Buffer) {
	rdb, tries := unreachable(t)
	var logs bytes.Buffer
	opts = append(opts, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	l, err := New(rdb, "fake", limit, opts...)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	l.now, l.sleep = clock.Now, clock.Sleep
	return l, clock, tries, &logs
}

// Without Redis, Wait paces at the fallback fraction of the limit, tries
// Redis once a second, and warns once.
func TestFallbackPacesLocallyAndProbesOnceASecond(t *testing.T) {
	redis.SetLogger(quiet{}) // go-redis logs every failed dial

	l, clock, tries, logs := newFake(t, redis_rate.Limit{Rate: 10, Period: time.Second, Burst: 4})
	start := clock.Now()
	for i := range 12 {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatalf("Wait %d: %v", i, err)
		}
	}
	// Half of 10 a second in bursts of 2: 2 at once, then one every 200 ms.
	if got, want := clock.Now().Sub(start), 2*time.Second; got != want {
		t.Errorf("12 Waits took %v, want %v", got, want)
	}
	// At 0 s, then one probe at 1 s; the last Wait starts at 1.8 s.
	if n := tries.count(); n != 2 {
		t.Errorf("Redis tried %d times in 2 s, want 2", n)
	}
	if n := strings.Count(logs.String(), "falling back"); n != 1 {
		t.Errorf("logged %d fallbacks, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("fallback not logged at Warn:\n%s", logs)
	}
}

// A Wait queued on the local limiter while Redis was down asks Redis again
// if Redis came back while it slept (another Wait's probe got through), so
// that the waiters queued locally during an outage do not leave at the
// local pace on top of the shared one once it is back.
func TestFallbackWaiterRequeuesWhenRedisIsBack(t *testing.T) {
	l, clock, tries, _ := newFake(t, redis_rate.Limit{Rate: 10, Period: time.Second, Burst: 1})
	if err := l.Wait(context.Background()); err != nil { // Redis fails: the local token now
		t.Fatal(err)
	}
	if n := tries.count(); n != 1 {
		t.Fatalf("Redis tried %d times, want 1", n)
	}
	var once sync.Once
	l.sleep = func(ctx context.Context, d time.Duration) error {
		once.Do(l.reachable) // a probe by another Wait got through
		return clock.Sleep(ctx, d)
	}
	start := clock.Now()
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The local token at 200 ms; Redis back, so Redis tried again (it
	// fails here), and the local token, given back, taken again at once.
	if n := tries.count(); n != 2 {
		t.Errorf("Redis tried %d times, want 2: once more when the local token came with Redis back", n)
	}
	if d := clock.Now().Sub(start); d != 200*time.Millisecond {
		t.Errorf("Wait took %v, want 200ms", d)
	}
}

// A cool-down set while Redis is unreachable still holds Wait back.
func TestFallbackHonoursCoolDown(t *testing.T) {
	l, clock, _, _ := newFake(t, redis_rate.PerSecond(100))
	start := clock.Now()
	l.CoolDown(context.Background(), start.Add(3*time.Second))
	l.CoolDown(context.Background(), start.Add(time.Second)) // shorter: ignored
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := clock.Now().Sub(start); got != 3*time.Second {
		t.Errorf("Wait returned after %v, want 3s", got)
	}
}

func TestFallbackWaitCancelled(t *testing.T) {
	l, _, _, _ := newFake(t, redis_rate.Limit{Rate: 1, Period: time.Minute, Burst: 1}, WithMaxWait(time.Hour))
	l.now, l.sleep = time.Now, sleep // real time: deadlines are on it
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The next token is two minutes away: half of 1 a minute.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := l.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want an error matching context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want an error matching context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Wait failed after %v, want at once", d)
	}
}

// Bad input gets an error naming the problem, never a panic.
func TestInvalidArguments(t *testing.T) {
	rdb, _ := unreachable(t)
	var nilClient *redis.Client // a typed nil: a non-nil interface whose methods panic
	ok := redis_rate.PerSecond(1)
	for _, tt := range []struct {
		name  string
		rdb   redis.UniversalClient
		lname string
		limit redis_rate.Limit
		opts  []Option
		want  string // in the error
	}{
		{"nil client", nil, "n", ok, nil, "client is nil"},
		{"typed nil client", nilClient, "n", ok, nil, "client is nil"},
		{"empty name", rdb, "", ok, nil, "name is empty"},
		{"zero rate", rdb, "n", redis_rate.Limit{Period: time.Second, Burst: 1}, nil, "invalid limit 0 req/s (burst 1)"},
		{"zero period", rdb, "n", redis_rate.Limit{Rate: 1, Burst: 1}, nil, "invalid limit"},
		{"negative period", rdb, "n", redis_rate.Limit{Rate: 1, Period: -time.Second, Burst: 1}, nil, "invalid limit"},
		{"zero burst", rdb, "n", redis_rate.Limit{Rate: 1, Period: time.Second}, nil, "invalid limit"},
		{"zero fraction", rdb, "n", ok, []Option{WithFallback(0)}, "WithFallback(0)"},
		{"negative fraction", rdb, "n", ok, []Option{WithFallback(-0.5)}, "WithFallback(-0.5)"},
		{"NaN fraction", rdb, "n", ok, []Option{WithFallback(math.NaN())}, "WithFallback(NaN)"},
		{"infinite fraction", rdb, "n", ok, []Option{WithFallback(math.Inf(1))}, "WithFallback(+Inf)"},
		{"zero timeout", rdb, "n", ok, []Option{WithTimeout(0)}, "WithTimeout(0s)"},
		{"negative timeout", rdb, "n", ok, []Option{WithTimeout(-time.Second)}, "WithTimeout(-1s)"},
		{"zero max wait", rdb, "n", ok, []Option{WithMaxWait(0)}, "WithMaxWait(0s)"},
		{"negative max wait", rdb, "n", ok, []Option{WithMaxWait(-time.Minute)}, "WithMaxWait(-1m0s)"},
		// The first bad value is reported, even if a later option is good.
		{"bad then good", rdb, "n", ok, []Option{WithTimeout(0), WithFallback(-1), WithTimeout(time.Second)}, "WithTimeout(0s)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			l, err := New(tt.rdb, tt.lname, tt.limit, tt.opts...)
			if err == nil || l != nil {
				t.Fatalf("New = %v, %v; want nil and an error", l, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "redislimit: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q, want one starting redislimit: and containing %q", msg, tt.want)
			}
		})
	}
}

// A Wait longer than the cap fails at once, without sleeping, whether it
// would wait for a cool-down, a token, or both in turn; one within the cap
// waits.
func TestMaxWait(t *testing.T) {
	for _, tt := range []struct {
		name     string
		limit    redis_rate.Limit
		maxWait  time.Duration // 0 for the default
		cool     time.Duration // a cool-down set before the Wait
		tokens   int           // tokens taken before the Wait
		fail     bool
		want     string        // in the error
		waitWant time.Duration // how long the Wait took, when it did not fail
	}{
		{"cool-down over the default cap", redis_rate.PerSecond(100), 0, 10 * time.Minute, 0, true,
			"waiting 10m0s for the cool-down to end would be over the cap of 1m0s", 0},
		{"cool-down at the default cap", redis_rate.PerSecond(100), 0, time.Minute, 0, false, "", time.Minute},
		{"cool-down over a set cap", redis_rate.PerSecond(100), time.Second, 1500 * time.Millisecond, 0, true,
			"waiting 1.5s for the cool-down to end would be over the cap of 1s", 0},
		// Half of 1 a minute while Redis is down: the next local token is
		// 2 minutes away.
		{"local token over the cap", redis_rate.Limit{Rate: 1, Period: time.Minute, Burst: 1}, 0, 0, 1, true,
			"waiting 2m0s for a local token would be over the cap of 1m0s", 0},
		{"local token within the cap", redis_rate.Limit{Rate: 1, Period: time.Minute, Burst: 1}, 3 * time.Minute, 0, 1, false, "", 2 * time.Minute},
		// Half of 1 per 40 s: a local token every 80 s. 50 s of cool-down,
		// then 30 s for a token: each under the cap, but 80 s in all.
		{"cool-down then token over the cap", redis_rate.Limit{Rate: 1, Period: 40 * time.Second, Burst: 1}, 0, 50 * time.Second, 1, true,
			"waiting 30s more for a local token, after 50s, would take 1m20s, over the cap of 1m0s", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.maxWait > 0 {
				opts = append(opts, WithMaxWait(tt.maxWait))
			}
			l, clock, _, _ := newFake(t, tt.limit, opts...)
			ctx := context.Background()
			for range tt.tokens {
				if err := l.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if tt.cool > 0 {
				l.CoolDown(ctx, clock.Now().Add(tt.cool))
			}
			start := clock.Now()
			err := l.Wait(ctx)
			took := clock.Now().Sub(start)
			if !tt.fail {
				if err != nil || took != tt.waitWant {
					t.Fatalf("Wait = %v after %v, want nil after %v", err, took, tt.waitWant)
				}
				return
			}
			if !errors.Is(err, ErrWaitTooLong) {
				t.Fatalf("Wait = %v, want an error matching ErrWaitTooLong", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(tt.name, "then") {
				return // it slept through the cool-down, then refused the token
			}
			if took != 0 {
				t.Errorf("Wait failed after %v, want at once", took)
			}
		})
	}
}

func TestLocalLimiterShare(t *testing.T) {
	rdb, _ := unreachable(t)
	for _, tt := range []struct {
		limit    redis_rate.Limit
		fraction float64
		rate     float64
		burst    int
	}{
		{redis_rate.PerSecond(40), 0.5, 20, 20},
		{redis_rate.Limit{Rate: 300, Period: time.Minute, Burst: 30}, 0.5, 2.5, 15},
		{redis_rate.Limit{Rate: 10, Period: time.Second, Burst: 1}, 0.5, 5, 1},
		{redis_rate.Limit{Rate: 10, Period: time.Second, Burst: 3}, 0.25, 2.5, 1},
	} {
		l, err := New(rdb, "n", tt.limit, WithFallback(tt.fraction))
		if err != nil {
			t.Fatal(err)
		}
		if got := float64(l.local.Limit()); math.Abs(got-tt.rate) > 1e-9 || l.local.Burst() != tt.burst {
			t.Errorf("%v at %v: local %v/s burst %d, want %v/s burst %d", tt.limit, tt.fraction, got, l.local.Burst(), tt.rate, tt.burst)
		}
	}
}
