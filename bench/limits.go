package bench

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// LimitsConfig describes a rate-limit run.
type LimitsConfig struct {
	Workers  int           // goroutines calling in a loop [16]
	Duration time.Duration // how long each client runs [20 s]
	Rate     float64       // requests a second the server admits [50]
	Burst    int           // the server's bucket size [50]
}

func (c LimitsConfig) withDefaults() LimitsConfig {
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.Duration <= 0 {
		c.Duration = 20 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 50
	}
	if c.Burst <= 0 {
		c.Burst = int(c.Rate)
	}
	return c
}

// LimitsResult is what one client achieved against the rate-limited server
// during the run.
type LimitsResult struct {
	Client     string
	Duration   time.Duration
	Hits       int // requests that reached the server in the window
	Served2xx  int // of which the server answered 200
	Served429  int // of which the server answered 429
	CallsOK    int // calls that returned 200 to the caller in the window
	CallsError int // calls that ended in an error or a non-2xx in the window
	// Late429 is the 429s served in the second half of the window, by
	// when a client that learns the limit has learned it.
	Late429 int
}

// Goodput is successful calls a second, as the caller sees them.
func (r LimitsResult) Goodput() float64 { return float64(r.CallsOK) / r.Duration.Seconds() }

// Share429 is the fraction of the requests that reached the server that it
// answered 429: load the client sent for nothing.
func (r LimitsResult) Share429() float64 {
	if r.Hits == 0 {
		return 0
	}
	return float64(r.Served429) / float64(r.Hits)
}

// LimitsClients returns the contenders of the rate-limit run on base, each
// with its defaults for waits and attempts: spotflowhttp with
// WithAdaptiveRateLimit and with its defaults, go-retryablehttp and
// failsafe-go. Bare is left out: without any wait it would spin at the
// loopback's full speed (about 17,000 requests a second, 99.7 % of them
// 429s, in a trial run) and take both cores for the whole run.
func LimitsClients(base http.RoundTripper) []Client {
	return []Client{
		{NameOurs + " adaptive", Ours(base, spotflowhttp.WithAdaptiveRateLimit())},
		{NameOurs + " defaults", Ours(base)},
		{NameRetryable, Retryable(base, -1)},
		{NameFailsafe, Failsafe(base, 0)},
	}
}

// Limits runs cfg.Workers goroutines calling GET in a loop for cfg.Duration
// through each client of LimitsClients in turn, against a fresh 127.0.0.1
// server that admits cfg.Rate requests a second through a token bucket and
// answers the rest 429 with Retry-After in whole seconds (rounded up) and no
// X-RateLimit headers. Calls still running at the end are allowed to finish
// (they are bounded by each client's attempts) but are not counted.
func Limits(ctx context.Context, cfg LimitsConfig, only func(name string) bool) ([]LimitsResult, error) {
	cfg = cfg.withDefaults()
	var out []LimitsResult
	for i, c := range LimitsClients(nil) {
		if only != nil && !only(c.Name) {
			continue
		}
		r, err := limitsOne(ctx, cfg, i)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func limitsOne(ctx context.Context, cfg LimitsConfig, which int) (LimitsResult, error) {
	bucket := &tokenBucket{rate: cfg.Rate, burst: float64(cfg.Burst), tokens: float64(cfg.Burst), last: time.Now()}
	var open atomic.Bool
	var hits, ok2xx, got429, late429 atomic.Int64
	var mid atomic.Int64 // the middle of the window, in Unix nanoseconds
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		counted := open.Load()
		if counted {
			hits.Add(1)
		}
		if wait, ok := bucket.take(time.Now()); !ok {
			if counted {
				got429.Add(1)
				if time.Now().UnixNano() >= mid.Load() {
					late429.Add(1)
				}
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", strconv.Itoa(wait))
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"code":"rate_limit_exceeded","message":"Too many requests"}`)
			return
		}
		if counted {
			ok2xx.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, okBody)
	}))
	defer srv.Close()
	base := LoopbackTransport(cfg.Workers)
	defer base.CloseIdleConnections()
	c := LimitsClients(base)[which]

	// Every call is bounded: a client waiting past the end plus a margin is
	// cancelled.
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration+15*time.Second)
	defer cancel()
	var callsOK, callsErr atomic.Int64
	start := time.Now()
	end := start.Add(cfg.Duration)
	mid.Store(start.Add(cfg.Duration / 2).UnixNano())
	open.Store(true)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && runCtx.Err() == nil {
				req, _ := http.NewRequestWithContext(runCtx, http.MethodGet, srv.URL+"/api/v1/payments/verify?reference=ref", nil)
				resp, err := c.HTTP.Do(req)
				good := err == nil && resp.StatusCode == http.StatusOK
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if time.Now().After(end) {
					continue // finished after the window: not counted
				}
				if good {
					callsOK.Add(1)
				} else {
					callsErr.Add(1)
				}
			}
		}()
	}
	time.AfterFunc(time.Until(end), func() { open.Store(false) })
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return LimitsResult{}, err
	}
	return LimitsResult{
		Client:     c.Name,
		Duration:   cfg.Duration,
		Hits:       int(hits.Load()),
		Served2xx:  int(ok2xx.Load()),
		Served429:  int(got429.Load()),
		CallsOK:    int(callsOK.Load()),
		CallsError: int(callsErr.Load()),
		Late429:    int(late429.Load()),
	}, nil
}

// tokenBucket is the server's limiter: rate tokens a second up to burst.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// take spends a token, or reports the whole seconds (at least 1) until one
// will be there, as Retry-After carries them.
func (b *tokenBucket) take(now time.Time) (retryAfter int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return max(int(math.Ceil((1-b.tokens)/b.rate)), 1), false
}

const okBody = `{"id":"pay_1","reference":"ref","amount":5000,"currency":"NGN","status":"successful"}`
