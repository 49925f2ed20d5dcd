package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/redislimit"
	"github.com/spotflow-go/spotflowhttp/redislimit/redistest"
)

// SharedLimitConfig describes a run of processes sharing one budget
// through Redis.
type SharedLimitConfig struct {
	Processes []int         // process counts to run, one run each [4, 16]
	Workers   int           // goroutines per process calling in a loop [2]
	Duration  time.Duration // how long each run lasts [20 s]
	Rate      int           // the shared budget, requests a second [40]
	Burst     int           // its burst [2]
}

func (c SharedLimitConfig) withDefaults() SharedLimitConfig {
	if len(c.Processes) == 0 {
		c.Processes = []int{4, 16}
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 40
	}
	if c.Burst <= 0 {
		c.Burst = 2
	}
	return c
}

// SharedLimitResult is what the processes of one run got together.
type SharedLimitResult struct {
	Limiter   string
	Processes int
	Workers   int           // per process
	Rate      int           // the shared budget, requests a second
	Window    time.Duration // the steady part of the run, after the first second
	Arrived   int           // requests that reached the server in the window
	Calls     int           // calls that returned in the window
	Failed    int           // of which ended in an error
	MeanCall  time.Duration // how long a call took, limiter wait included
	P99Call   time.Duration
	MaxCall   time.Duration
}

// Aggregate is the requests a second that reached the server in the window.
func (r SharedLimitResult) Aggregate() float64 { return float64(r.Arrived) / r.Window.Seconds() }

// OfLimit is Aggregate as a share of the budget.
func (r SharedLimitResult) OfLimit() float64 { return r.Aggregate() / float64(r.Rate) }

// Unfairness is the longest call over the mean: 1 when every caller waits
// its turn.
func (r SharedLimitResult) Unfairness() float64 {
	if r.MeanCall == 0 {
		return 0
	}
	return float64(r.MaxCall) / float64(r.MeanCall)
}

// Names of the shared limiters, as printed in the table.
const (
	NameRedislimit = "redislimit"
	NamePolling    = "redis_rate polling"
)

// SharedLimit starts a redis-server on 127.0.0.1 (it must be in PATH) and,
// for each process count and each limiter (redislimit, and a Limiter that
// polls redis_rate's Allow and sleeps its RetryAfter, as redislimit did
// before its waiters were queued), runs that many "processes" calling GET
// in a loop for cfg.Duration through spotflowhttp.NewTransport with the
// limiter, against a local server that answers 200 to everything and
// counts arrivals.
//
// A process here is a goroutine group with its own Redis client (its own
// connections), its own Limiter and its own http.Transport: a Limiter
// shares nothing in memory with another, so what they do through Redis is
// what separate processes do; child processes would add the plumbing to
// collect their figures and, on two cores, scheduling noise, and nothing
// the limiter can see.
func SharedLimit(ctx context.Context, cfg SharedLimitConfig, only func(name string) bool) ([]SharedLimitResult, error) {
	cfg = cfg.withDefaults()
	rs, err := redistest.Start()
	if err != nil {
		return nil, err
	}
	defer rs.Kill()
	var out []SharedLimitResult
	for _, n := range cfg.Processes {
		for _, name := range []string{NameRedislimit, NamePolling} {
			if only != nil && !only(name) {
				continue
			}
			r, err := sharedOne(ctx, cfg, rs.Addr(), name, n)
			if err != nil {
				return out, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func sharedOne(ctx context.Context, cfg SharedLimitConfig, addr, name string, procs int) (SharedLimitResult, error) {
	limit := redis_rate.Limit{Rate: cfg.Rate, Period: time.Second, Burst: cfg.Burst}
	budget := fmt.Sprintf("bench-%s-%d-%d", strings.ReplaceAll(name, " ", "-"), procs, time.Now().UnixNano())
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		mu.Lock()
		arrivals = append(arrivals, now)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(okBody))
	}))
	defer srv.Close()

	clients := make([]*http.Client, procs)
	for i := range clients {
		rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
		defer rdb.Close()
		var l spotflowhttp.Limiter
		if name == NamePolling {
			l = &pollingLimiter{rdb: rdb, key: budget, limit: limit}
		} else {
			rl, err := redislimit.New(rdb, budget, limit, redislimit.WithTimeout(time.Second))
			if err != nil {
				return SharedLimitResult{}, err
			}
			l = rl
		}
		base := LoopbackTransport(cfg.Workers)
		defer base.CloseIdleConnections()
		clients[i] = Ours(base, spotflowhttp.WithLimiter(l))
	}

	start := time.Now()
	end := start.Add(cfg.Duration)
	// A call whose turn comes after the end fails at once rather than wait.
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var (
		calls  []time.Duration
		failed int
		wg     sync.WaitGroup
	)
	for _, c := range clients {
		for range cfg.Workers {
			wg.Go(func() {
				for runCtx.Err() == nil {
					t0 := time.Now()
					req, _ := http.NewRequestWithContext(runCtx, http.MethodGet, srv.URL+"/api/v1/payments/verify?reference=ref", nil)
					resp, err := c.Do(req)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					t1 := time.Now()
					if t1.After(end) || t0.Before(start.Add(time.Second)) || errors.Is(err, context.DeadlineExceeded) {
						continue // outside the window, or its turn came after it
					}
					mu.Lock()
					calls = append(calls, t1.Sub(t0))
					if err != nil || resp.StatusCode != http.StatusOK {
						failed++
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return SharedLimitResult{}, err
	}
	from := start.Add(time.Second) // after the burst and the first dials
	n := 0
	for _, t := range arrivals {
		if !t.Before(from) && t.Before(end) {
			n++
		}
	}
	r := SharedLimitResult{
		Limiter: name, Processes: procs, Workers: cfg.Workers, Rate: cfg.Rate,
		Window: end.Sub(from), Arrived: n, Calls: len(calls), Failed: failed,
	}
	if len(calls) > 0 {
		slices.Sort(calls)
		var sum time.Duration
		for _, d := range calls {
			sum += d
		}
		r.MeanCall = sum / time.Duration(len(calls))
		r.P99Call = calls[len(calls)*99/100]
		r.MaxCall = calls[len(calls)-1]
	}
	return r, nil
}

// pollingLimiter is how redislimit waited before its waiters were queued,
// without the cool-down and the fallback: ask redis_rate for a token, and
// when refused sleep for its RetryAfter and ask again.
type pollingLimiter struct {
	rdb   *redis.Client
	key   string
	limit redis_rate.Limit
}

func (p *pollingLimiter) Wait(ctx context.Context) error {
	rl := redis_rate.NewLimiter(p.rdb)
	for ctx.Err() == nil {
		res, err := rl.Allow(ctx, "spotflowhttp:{"+p.key+"}", p.limit)
		if err != nil {
			return err
		}
		if res.Allowed > 0 {
			return nil
		}
		d := max(res.RetryAfter, time.Millisecond)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			return context.DeadlineExceeded
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return ctx.Err()
}

// SharedLimitTable formats shared-limit results as a Markdown table.
func SharedLimitTable(rs []SharedLimitResult) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(w, "| limiter\t| processes × workers\t| budget\t| reached the server\t| of the budget\t| mean call\t| p99 call\t| longest call\t| longest / mean\t| failed\t|")
	fmt.Fprintln(w, "|---\t|---:\t|---:\t|---:\t|---:\t|---:\t|---:\t|---:\t|---:\t|---:\t|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s\t| %d × %d\t| %d/s\t| %.2f/s\t| %.2f %%\t| %s\t| %s\t| %s\t| %.2f\t| %d\t|\n",
			r.Limiter, r.Processes, r.Workers, r.Rate, r.Aggregate(), 100*r.OfLimit(),
			r.MeanCall.Round(time.Millisecond), r.P99Call.Round(time.Millisecond), r.MaxCall.Round(time.Millisecond), r.Unfairness(), r.Failed)
	}
	w.Flush()
	return b.String()
}
