package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// LimitStep is the server's limit for part of an adaptive run.
type LimitStep struct {
	Rate     float64       // requests a second
	Burst    int           // the bucket's size; 0 means Rate (one second's worth)
	Duration time.Duration // how long this limit holds
}

// AdaptiveConfig describes an adaptive-pacing run.
type AdaptiveConfig struct {
	Name    string
	Workers int         // goroutines calling in a loop; 0 means 16
	Steps   []LimitStep // the server's limit over time, in order
	// Settle is how long after each change of the limit the goodput is not
	// judged (the time allowed to find it): the 10 s.
	Settle time.Duration
	// Headers has the server send X-RateLimit-Limit (its bucket's size),
	// X-RateLimit-Remaining (the whole tokens left) and X-RateLimit-Reset
	// (the Unix second the bucket will be full) on every answer, as
	// spotflowtest does.
	Headers bool
}

// AdaptiveScenarios are the runs of cmd/compare -adaptive: 16 workers
// against a fixed 50 req/s for 20 s, and against a limit that goes
// 50 → 20 → 80 req/s, 20 s each, without and with X-RateLimit headers.
func AdaptiveScenarios() []AdaptiveConfig {
	changing := []LimitStep{
		{Rate: 50, Duration: 20 * time.Second},
		{Rate: 20, Duration: 20 * time.Second},
		{Rate: 80, Duration: 20 * time.Second},
	}
	return []AdaptiveConfig{
		{Name: "fixed 50 req/s", Steps: []LimitStep{{Rate: 50, Duration: 20 * time.Second}}},
		{Name: "50 → 20 → 80 req/s", Settle: 10 * time.Second, Steps: changing},
		{Name: "50 → 20 → 80 req/s, X-RateLimit headers", Settle: 10 * time.Second, Steps: slices.Clone(changing), Headers: true},
	}
}

// AdaptiveResult is what spotflowhttp with WithAdaptiveRateLimit got in an
// adaptive run, second by second.
type AdaptiveResult struct {
	Config AdaptiveConfig
	Limit  []float64 // the server's rate in each second
	Good   []int     // calls that returned 200 to the caller, by the second they returned
	Hits   []int     // requests that reached the server, by the second they arrived
	Got429 []int     // of which the server answered 429
}

// Adaptive runs cfg.Workers goroutines calling GET in a loop through
// spotflowhttp with WithAdaptiveRateLimit against a fresh 127.0.0.1 server:
// a token bucket whose rate and size follow cfg.Steps (a change keeps the
// tokens, up to the new size), answering the rest 429 with Retry-After in
// whole seconds (rounded up) and no X-RateLimit headers. Calls that end
// after the run are not counted.
func Adaptive(ctx context.Context, cfg AdaptiveConfig) (AdaptiveResult, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	var total time.Duration
	var limit []float64
	for i, s := range cfg.Steps {
		if s.Burst <= 0 {
			cfg.Steps[i].Burst = int(math.Ceil(s.Rate))
		}
		total += s.Duration
		for range int(s.Duration / time.Second) {
			limit = append(limit, s.Rate)
		}
	}
	secs := len(limit)
	res := AdaptiveResult{Config: cfg, Limit: limit, Good: make([]int, secs), Hits: make([]int, secs), Got429: make([]int, secs)}
	var mu sync.Mutex // guards res's counts
	count := func(xs []int, start time.Time) {
		if i := int(time.Since(start) / time.Second); i >= 0 && i < secs {
			mu.Lock()
			xs[i]++
			mu.Unlock()
		}
	}

	first := cfg.Steps[0]
	bucket := &tokenBucket{rate: first.Rate, burst: float64(first.Burst), tokens: float64(first.Burst), last: time.Now()}
	start := time.Now() // before the server, which reads it
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count(res.Hits, start)
		w.Header().Set("Content-Type", "application/json")
		wait, ok := bucket.take(time.Now())
		if cfg.Headers {
			limit, rem, reset := bucket.state(time.Now())
			w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit))
			w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(rem))
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
		}
		if !ok {
			count(res.Got429, start)
			w.Header().Set("Retry-After", strconv.Itoa(wait))
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"code":"rate_limit_exceeded","message":"Too many requests"}`)
			return
		}
		io.WriteString(w, okBody)
	}))
	defer srv.Close()
	base := LoopbackTransport(cfg.Workers)
	defer base.CloseIdleConnections()
	client := Ours(base, spotflowhttp.WithAdaptiveRateLimit())

	runCtx, cancel := context.WithTimeout(ctx, total+15*time.Second)
	defer cancel()
	end := start.Add(total)
	var timers []*time.Timer
	at := time.Duration(0)
	for i, s := range cfg.Steps[1:] {
		at += cfg.Steps[i].Duration
		timers = append(timers, time.AfterFunc(time.Until(start.Add(at)), func() { bucket.set(time.Now(), s.Rate, float64(s.Burst)) }))
	}
	defer func() {
		for _, t := range timers {
			t.Stop()
		}
	}()
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && runCtx.Err() == nil {
				req, _ := http.NewRequestWithContext(runCtx, http.MethodGet, srv.URL+"/api/v1/payments/verify?reference=ref", nil)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					count(res.Good, start)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// set changes the bucket's rate and size from now on, keeping its tokens up
// to the new size.
func (b *tokenBucket) set(now time.Time, rate, burst float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
	b.rate, b.burst = rate, burst
	b.tokens = math.Min(b.tokens, burst)
}

// state is the bucket's size, its whole tokens left and the Unix second at
// which it will be full, for the X-RateLimit headers.
func (b *tokenBucket) state(now time.Time) (limit, remaining int, reset int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	tokens := b.tokens
	if now.After(b.last) {
		tokens = math.Min(b.burst, tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	full := now.Add(time.Duration((b.burst - tokens) / b.rate * float64(time.Second)))
	reset = full.Unix()
	if full.Nanosecond() != 0 {
		reset++
	}
	return int(b.burst), int(tokens), reset
}

// Window is the goodput of one limit of an adaptive run, from Settle after
// it began to its end.
type Window struct {
	From, To int     // seconds of the run
	Rate     float64 // the limit
	Goodput  float64 // calls that returned 200, a second
}

// Share is the goodput as a fraction of the limit.
func (w Window) Share() float64 { return w.Goodput / w.Rate }

// Windows are the judged parts of the run, one per limit.
func (r AdaptiveResult) Windows() []Window {
	var out []Window
	from := 0
	for _, s := range r.Config.Steps {
		n := int(s.Duration / time.Second)
		w := Window{From: from + int(math.Ceil(r.Config.Settle.Seconds())), To: from + n, Rate: s.Rate}
		if w.To > w.From {
			w.Goodput = float64(sum(r.Good[w.From:w.To])) / float64(w.To-w.From)
			out = append(out, w)
		}
		from += n
	}
	return out
}

// Share429 is the fraction of the requests that reached the server that it
// answered 429.
func (r AdaptiveResult) Share429() float64 {
	if h := sum(r.Hits); h > 0 {
		return float64(sum(r.Got429)) / float64(h)
	}
	return 0
}

// Summary is one line per judged window and the 429 share, in Markdown.
func (r AdaptiveResult) Summary() string {
	var b strings.Builder
	for _, w := range r.Windows() {
		fmt.Fprintf(&b, "- seconds %d–%d, limit %.0f req/s: goodput %.1f req/s, **%.1f %%** of the limit\n", w.From, w.To, w.Rate, w.Goodput, 100*w.Share())
	}
	fmt.Fprintf(&b, "- 429s: %d of %d requests, **%.2f %%**\n", sum(r.Got429), sum(r.Hits), 100*r.Share429())
	return b.String()
}

// Curve is the per-second goodput of the run as a Markdown table.
func (r AdaptiveResult) Curve() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(w, "| second\t| limit\t| goodput\t| server hits\t| 429s\t|")
	fmt.Fprintln(w, "|---:\t|---:\t|---:\t|---:\t|---:\t|")
	for i := range r.Limit {
		fmt.Fprintf(w, "| %d\t| %.0f\t| %d\t| %d\t| %d\t|\n", i, r.Limit[i], r.Good[i], r.Hits[i], r.Got429[i])
	}
	w.Flush()
	return b.String()
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
