package redislimit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/redislimit"
)

// patient gives Redis a second to answer, for the tests that are not about
// Redis failing: on a loaded machine the default 100 ms is sometimes not
// enough, and a Limiter that falls back paces by other rules.
var patient = redislimit.WithTimeout(time.Second)

// newLimiter is redislimit.New for arguments that must be valid.
func newLimiter(t *testing.T, rdb redis.UniversalClient, name string, limit redis_rate.Limit, opts ...redislimit.Option) *redislimit.Limiter {
	t.Helper()
	l, err := redislimit.New(rdb, name, limit, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// process is one client "process": its own Redis client, Limiter, transport
// stack and connections.
type process struct {
	lim  *redislimit.Limiter
	http *http.Client
}

func newProcess(t *testing.T, rdb *redis.Client, name string, limit redis_rate.Limit, opts ...redislimit.Option) process {
	t.Helper()
	l := newLimiter(t, rdb, name, limit, opts...)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	return process{lim: l, http: &http.Client{Transport: spotflowhttp.NewTransport(base, spotflowhttp.WithLimiter(l))}}
}

// get sends one GET to url as client, reads and closes the response.
func (p process) get(ctx context.Context, url, client string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Client", client)
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// countingServer answers 200 and records arrivals.
func countingServer(t *testing.T) (*httptest.Server, *arrivals) {
	a := &arrivals{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.add(r.Header.Get("X-Client"))
	}))
	t.Cleanup(srv.Close)
	return srv, a
}

// hammer has each process send requests from workers goroutines, one after
// another, until ctx is done. It returns the longest request.
func hammer(t *testing.T, ctx context.Context, url string, procs []process, workers int) time.Duration {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		longest time.Duration
	)
	for i, p := range procs {
		for range workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					start := time.Now()
					_, err := p.get(ctx, url, strconv.Itoa(i))
					d := time.Since(start)
					mu.Lock()
					longest = max(longest, d)
					mu.Unlock()
					if err != nil {
						// Near the end, the next token comes after the deadline.
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("process %d: %v", i, err)
						}
						return
					}
				}
			})
		}
	}
	wg.Wait()
	return longest
}

// Four processes with a shared budget of 40 requests a second, each
// pushing as hard as it can, together send 40 a second.
func TestSharedBudget(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.Limit{Rate: 40, Period: time.Second, Burst: 2}
	const n, run = 4, 10 * time.Second
	srv, arr := countingServer(t)
	var procs []process
	for range n {
		procs = append(procs, newProcess(t, rs.client(t), t.Name(), limit, patient))
	}

	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(run))
	defer cancel()
	longest := hammer(t, ctx, srv.URL, procs, 2)

	got, count := arr.rate(start, start.Add(run))
	// GCRA admits the burst at once, then one an interval: rate × run +
	// burst − 1 in all.
	got -= float64(limit.Burst-1) / run.Seconds()
	t.Logf("%d requests in %v from %d processes: %.2f req/s for a budget of 40 (per process %s; longest request %v)",
		count, run, n, got, arr.byClient(), longest.Round(time.Millisecond))
	if got < 36 || got > 44 {
		t.Errorf("aggregate rate %.2f req/s, want 40 ± 10 %%", got)
	}
}

// When Redis dies, requests go on at the fallback rate, none hangs, the
// logger says so; when Redis is back, so is the shared budget.
func TestFallbackWhenRedisDies(t *testing.T) {
	rs := ownRedis(t)
	rec, logger := newRecorder(t)
	defer rec.dump()
	limit := redis_rate.Limit{Rate: 40, Period: time.Second, Burst: 2}
	// 2 processes at a quarter of the limit each: 20 a second in all
	// without Redis, against 40 with it.
	procs := []process{
		newProcess(t, rs.client(t), t.Name(), limit, redislimit.WithFallback(0.25), redislimit.WithLogger(logger)),
		newProcess(t, rs.client(t), t.Name(), limit, redislimit.WithFallback(0.25), redislimit.WithLogger(logger)),
	}
	srv, arr := countingServer(t)

	const phase = 3 * time.Second
	start := time.Now()
	killed, restarted := start.Add(phase), start.Add(2*phase)
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(3*phase))
	defer cancel()
	done := make(chan time.Duration)
	go func() { done <- hammer(t, ctx, srv.URL, procs, 1) }()

	time.Sleep(time.Until(killed))
	rs.kill()
	time.Sleep(time.Until(restarted))
	rs.restart(t)
	longest := <-done

	before, _ := arr.rate(start.Add(500*time.Millisecond), killed)
	during, _ := arr.rate(killed.Add(500*time.Millisecond), restarted)
	// Redis is tried again within a second of its restart.
	after, _ := arr.rate(restarted.Add(1200*time.Millisecond), start.Add(3*phase))
	t.Logf("with Redis %.1f req/s, Redis killed %.1f req/s (fallback 2 × 10), Redis restarted %.1f req/s; longest request %v",
		before, during, after, longest.Round(time.Millisecond))
	if before < 34 || before > 46 {
		t.Errorf("with Redis: %.1f req/s, want about 40", before)
	}
	if during < 15 || during > 25 {
		t.Errorf("after Redis died: %.1f req/s, want about 20", during)
	}
	if after < 34 || after > 46 {
		t.Errorf("after Redis restarted: %.1f req/s, want about 40", after)
	}
	if longest > time.Second {
		t.Errorf("longest request took %v, want under 1 s", longest)
	}
	// At least one per process; a loaded machine can add short outages.
	if n := rec.count(slog.LevelWarn, "falling back"); n < 2 {
		t.Errorf("%d Warn lines about falling back, want one per process", n)
	}
	if n := rec.count(slog.LevelInfo, "reachable again"); n < 2 {
		t.Errorf("%d Info lines about Redis being back, want one per process", n)
	}
}

// A Redis that accepts connections but answers nothing costs a request
// the timeout, not more.
func TestFrozenRedisCostsTheTimeout(t *testing.T) {
	rs := ownRedis(t)
	rec, logger := newRecorder(t)
	defer rec.dump()
	l := newLimiter(t, rs.client(t), t.Name(), redis_rate.PerSecond(100), redislimit.WithLogger(logger))
	ctx := context.Background()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	rs.signal(t, syscall.SIGSTOP)
	defer rs.signal(t, syscall.SIGCONT)
	var longest time.Duration
	for i := range 5 {
		start := time.Now()
		if err := l.Wait(ctx); err != nil {
			t.Fatalf("Wait %d: %v", i, err)
		}
		longest = max(longest, time.Since(start))
	}
	t.Logf("longest Wait with Redis frozen: %v", longest.Round(time.Millisecond))
	if longest > 500*time.Millisecond {
		t.Errorf("a Wait took %v with Redis frozen, want about the 100 ms timeout at most", longest)
	}
	if n := rec.count(slog.LevelWarn, "falling back"); n != 1 {
		t.Errorf("%d Warn lines about falling back, want 1", n)
	}
}

func TestNewWarnsWhenClientIgnoresDeadlines(t *testing.T) {
	rec, logger := newRecorder(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	newLimiter(t, rdb, t.Name(), redis_rate.PerSecond(1), redislimit.WithLogger(logger))
	if n := rec.count(slog.LevelWarn, "ContextTimeoutEnabled"); n != 1 {
		t.Errorf("%d warnings about ContextTimeoutEnabled, want 1", n)
	}
}

// CoolDown on one Limiter holds back another using the same name through
// its own client, and a later, shorter CoolDown does not shorten it.
func TestCoolDownIsShared(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.PerSecond(100)
	a := newLimiter(t, rs.client(t), t.Name(), limit, patient)
	b := newLimiter(t, rs.client(t), t.Name(), limit, patient)
	ctx := context.Background()

	start := time.Now()
	a.CoolDown(ctx, start.Add(500*time.Millisecond))
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 480*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("Wait returned after %v, want when the 500 ms cool-down ends", d)
	}

	start = time.Now()
	a.CoolDown(ctx, start.Add(time.Second))
	b.CoolDown(ctx, start.Add(200*time.Millisecond))
	a.CoolDown(ctx, start.Add(100*time.Millisecond))
	rdb := rs.client(t)
	if ttl := rdb.PTTL(ctx, "spotflowhttp:{"+t.Name()+"}:cooldown").Val(); ttl < 900*time.Millisecond {
		t.Errorf("cool-down key expires in %v, want the longer cool-down, about 1 s", ttl)
	}
	c := newLimiter(t, rs.client(t), t.Name(), limit, patient) // knows nothing locally
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 980*time.Millisecond || d > 1300*time.Millisecond {
		t.Errorf("Wait returned after %v, want when the 1 s cool-down ends", d)
	}
}

// A cool-down that ends after the deadline fails Wait at once.
func TestCoolDownPastDeadline(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.PerSecond(100)
	newLimiter(t, rs.client(t), t.Name(), limit, patient).CoolDown(context.Background(), time.Now().Add(2*time.Second))
	b := newLimiter(t, rs.client(t), t.Name(), limit, patient)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want an error matching context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Wait failed after %v, want at once", d)
	}
}

// A cool-down over the cap, set by another process, fails Wait at once,
// without a deadline, and the transport reports it as a rate-limit
// refusal without sending anything.
func TestCoolDownOverTheCap(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.PerSecond(100)
	newLimiter(t, rs.client(t), t.Name(), limit, patient).CoolDown(context.Background(), time.Now().Add(10*time.Minute))

	b := newLimiter(t, rs.client(t), t.Name(), limit, patient) // knows nothing locally
	start := time.Now()
	err := b.Wait(context.Background())
	if !errors.Is(err, redislimit.ErrWaitTooLong) {
		t.Fatalf("Wait = %v, want an error matching ErrWaitTooLong", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Wait failed after %v, want at once", d)
	}
	if !strings.Contains(err.Error(), "for the cool-down to end would be over the cap of 1m0s") {
		t.Errorf("error %q does not say what it waited for and the cap", err)
	}

	srv, arr := countingServer(t)
	c := newLimiter(t, rs.client(t), t.Name(), limit, patient)
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithLimiter(c))}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("request answered %d, want an error", resp.StatusCode)
	}
	if !errors.Is(err, spotflowhttp.ErrRateLimit) || !errors.Is(err, redislimit.ErrWaitTooLong) {
		t.Fatalf("request error %v, want one matching ErrRateLimit and ErrWaitTooLong", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("request failed after %v, want at once", d)
	}
	if _, n := arr.rate(start.Add(-time.Minute), time.Now()); n != 0 {
		t.Errorf("server saw %d requests, want none", n)
	}
}

// A cool-down within the cap is waited for; one just over it is not.
func TestCoolDownWithinTheCap(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.PerSecond(100)
	capped := redislimit.WithMaxWait(time.Second)
	a := newLimiter(t, rs.client(t), t.Name(), limit, patient, capped)
	b := newLimiter(t, rs.client(t), t.Name(), limit, patient, capped)
	ctx := context.Background()

	start := time.Now()
	a.CoolDown(ctx, start.Add(400*time.Millisecond))
	if err := b.Wait(ctx); err != nil {
		t.Fatalf("Wait = %v, want nil after the 400 ms cool-down", err)
	}
	if d := time.Since(start); d < 380*time.Millisecond || d > 900*time.Millisecond {
		t.Errorf("Wait returned after %v, want when the 400 ms cool-down ends", d)
	}

	a.CoolDown(ctx, time.Now().Add(1500*time.Millisecond))
	start = time.Now()
	if err := b.Wait(ctx); !errors.Is(err, redislimit.ErrWaitTooLong) {
		t.Fatalf("Wait = %v, want an error matching ErrWaitTooLong for 1.5 s over a 1 s cap", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Wait failed after %v, want at once", d)
	}
}

// A 429 with Retry-After seen by one process's transport holds back
// another process's requests.
func TestRetryAfterHoldsOtherProcesses(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.PerSecond(100)
	var (
		mu       sync.Mutex
		rejected time.Time
		arrived  = map[string]time.Time{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		client := r.Header.Get("X-Client")
		arrived[client] = time.Now()
		if client == "a" && rejected.IsZero() {
			rejected = time.Now()
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"type":"rate_limit_error","code":"rate_limit_exceeded","message":"slow down"}}`)
		}
	}))
	defer srv.Close()

	// a does not retry, so that b asks right after the 429.
	la := newLimiter(t, rs.client(t), t.Name(), limit, patient)
	a := process{lim: la, http: &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithLimiter(la), spotflowhttp.WithMaxAttempts(1))}}
	b := newProcess(t, rs.client(t), t.Name(), limit, patient)
	ctx := context.Background()
	resp, err := a.get(ctx, srv.URL, "a")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a: status %d, want 429", resp.StatusCode)
	}
	if _, err := b.get(ctx, srv.URL, "b"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	d := arrived["b"].Sub(rejected)
	t.Logf("b's request reached the server %v after the 429 a got", d.Round(time.Millisecond))
	if d < 900*time.Millisecond || d > 2*time.Second {
		t.Errorf("b's request arrived %v after the 429, want after its Retry-After of 1 s", d)
	}
}

// Wait fails at once when the next token comes after the deadline, and the
// transport reports it as a rate-limit refusal.
func TestWaitPastDeadline(t *testing.T) {
	rs := needRedis(t)
	limit := redis_rate.Limit{Rate: 1, Period: time.Second, Burst: 1}
	p := newProcess(t, rs.client(t), t.Name(), limit, patient)
	srv, arr := countingServer(t)
	if err := p.lim.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.lim.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want an error matching context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Wait failed after %v, want at once", d)
	}

	start = time.Now()
	_, err = p.get(ctx, srv.URL, "0")
	if !errors.Is(err, spotflowhttp.ErrRateLimit) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request error %v, want one matching ErrRateLimit and context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("request failed after %v, want at once", d)
	}
	if _, n := arr.rate(start.Add(-time.Minute), time.Now()); n != 0 {
		t.Errorf("server saw %d requests, want none", n)
	}
}

// A cancelled context ends a Wait for a token promptly.
func TestWaitCancelled(t *testing.T) {
	rs := needRedis(t)
	// The cap is raised: the next token is a minute away.
	l := newLimiter(t, rs.client(t), t.Name(), redis_rate.Limit{Rate: 1, Period: time.Minute, Burst: 1}, patient, redislimit.WithMaxWait(time.Hour))
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := l.Wait(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want an error matching context.Canceled", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Wait returned %v after the cancellation, want promptly", d)
	}
}
