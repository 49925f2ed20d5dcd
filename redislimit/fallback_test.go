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
	l := New(rdb, "fake", limit, opts...)
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
	l, _, _, _ := newFake(t, redis_rate.Limit{Rate: 1, Period: time.Minute, Burst: 1})
	l.now, l.sleep = time.Now, sleep // real time: deadlines are on it
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The next token is a minute away.
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

func TestInvalidArgumentsPanic(t *testing.T) {
	rdb, _ := unreachable(t)
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"nil client", func() { New(nil, "n", redis_rate.PerSecond(1)) }},
		{"empty name", func() { New(rdb, "", redis_rate.PerSecond(1)) }},
		{"zero rate", func() { New(rdb, "n", redis_rate.Limit{Period: time.Second, Burst: 1}) }},
		{"zero period", func() { New(rdb, "n", redis_rate.Limit{Rate: 1, Burst: 1}) }},
		{"zero burst", func() { New(rdb, "n", redis_rate.Limit{Rate: 1, Period: time.Second}) }},
		{"zero fraction", func() { WithFallback(0) }},
		{"negative fraction", func() { WithFallback(-0.5) }},
		{"NaN fraction", func() { WithFallback(math.NaN()) }},
		{"infinite fraction", func() { WithFallback(math.Inf(1)) }},
		{"zero timeout", func() { WithTimeout(0) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.f()
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
		l := New(rdb, "n", tt.limit, WithFallback(tt.fraction))
		if got := float64(l.local.Limit()); math.Abs(got-tt.rate) > 1e-9 || l.local.Burst() != tt.burst {
			t.Errorf("%v at %v: local %v/s burst %d, want %v/s burst %d", tt.limit, tt.fraction, got, l.local.Burst(), tt.rate, tt.burst)
		}
	}
}
