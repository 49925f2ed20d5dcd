package spotflowhttp_test

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// simClock is a fake clock for several goroutines: it runs them one at a
// time in virtual time. A goroutine runs until it sleeps or ends; then the
// one that is due first (in the order they went to sleep, for ties) runs.
// Sleep moves the time on only when every goroutine is asleep, so the
// schedule, and every figure measured on it, is the same on every run and
// every machine.
type simClock struct {
	mu       sync.Mutex
	idle     *sync.Cond // signalled when no goroutine runs
	now      time.Time
	seq      int
	sleepers sleeperHeap
	running  int
}

type sleeper struct {
	at  time.Time
	seq int
	ch  chan struct{}
}

type sleeperHeap []sleeper

func (h sleeperHeap) Len() int { return len(h) }
func (h sleeperHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h sleeperHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *sleeperHeap) Push(x any)   { *h = append(*h, x.(sleeper)) }
func (h *sleeperHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

func newSimClock(start time.Time) *simClock {
	c := &simClock{now: start}
	c.idle = sync.NewCond(&c.mu)
	return c
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep parks the calling goroutine until the virtual time is d later. The
// contexts of a simulation are never cancelled.
func (c *simClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	c.mu.Lock()
	ch := c.park(c.now.Add(d))
	c.running--
	if c.running == 0 {
		c.idle.Signal()
	}
	c.mu.Unlock()
	<-ch
	return ctx.Err()
}

// park queues a wake-up at at; c.mu is held.
func (c *simClock) park(at time.Time) chan struct{} {
	c.seq++
	ch := make(chan struct{})
	heap.Push(&c.sleepers, sleeper{at: at, seq: c.seq, ch: ch})
	return ch
}

// Go starts f as a goroutine of the simulation; it first runs when Run
// gets to it.
func (c *simClock) Go(f func()) {
	c.mu.Lock()
	ch := c.park(c.now)
	c.mu.Unlock()
	go func() {
		<-ch
		f()
		c.mu.Lock()
		c.running--
		if c.running == 0 {
			c.idle.Signal()
		}
		c.mu.Unlock()
	}()
}

// Run wakes the goroutines one at a time until all have ended.
func (c *simClock) Run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for c.running > 0 {
			c.idle.Wait()
		}
		if len(c.sleepers) == 0 {
			return
		}
		s := heap.Pop(&c.sleepers).(sleeper)
		if s.at.After(c.now) {
			c.now = s.at
		}
		c.running++
		close(s.ch)
	}
}

// limitStep is the server's limit from a time on.
type limitStep struct {
	from  time.Duration // since the start of the run
	rate  float64       // requests a second
	burst float64
}

// simServer is Spotflow's rate limiter as a token bucket on the simulation's
// clock, whose rate and size follow a schedule. It answers the rest 429 with
// Retry-After in whole seconds, rounded up, at least 1, and (with headers)
// the X-RateLimit-* headers of spotflowtest. Each request takes rtt/2 to
// arrive and rtt/2 for its answer to come back.
type simServer struct {
	clock   *simClock
	start   time.Time
	steps   []limitStep
	rtt     time.Duration
	headers bool

	mu       sync.Mutex
	step     int
	tokens   float64
	last     time.Time
	hits     []int // per second of the run, by arrival
	r429     []int
	arrivals []time.Time
}

func newSimServer(clock *simClock, rtt time.Duration, steps ...limitStep) *simServer {
	now := clock.Now()
	return &simServer{clock: clock, start: now, steps: steps, rtt: rtt, tokens: steps[0].burst, last: now}
}

func (s *simServer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	s.clock.Sleep(r.Context(), s.rtt/2)
	status, h := s.serve(s.clock.Now())
	s.clock.Sleep(r.Context(), s.rtt-s.rtt/2)
	return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
}

func (s *simServer) serve(now time.Time) (int, http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := now.Sub(s.start)
	for s.step+1 < len(s.steps) && at >= s.steps[s.step+1].from {
		s.step++
		s.tokens = min(s.tokens, s.steps[s.step].burst)
	}
	st := s.steps[s.step]
	if now.After(s.last) {
		s.tokens = min(st.burst, s.tokens+now.Sub(s.last).Seconds()*st.rate)
		s.last = now
	}
	s.arrivals = append(s.arrivals, now)
	sec := int(at / time.Second)
	for len(s.hits) <= sec {
		s.hits, s.r429 = append(s.hits, 0), append(s.r429, 0)
	}
	s.hits[sec]++
	h := http.Header{}
	if s.tokens >= 1 {
		s.tokens--
		s.rateHeaders(h, st, now)
		return http.StatusOK, h
	}
	s.r429[sec]++
	wait := max(int(math.Ceil((1-s.tokens)/st.rate)), 1)
	h.Set("Retry-After", strconv.Itoa(wait))
	s.rateHeaders(h, st, now)
	return http.StatusTooManyRequests, h
}

func (s *simServer) rateHeaders(h http.Header, st limitStep, now time.Time) {
	if !s.headers {
		return
	}
	full := now.Add(time.Duration((st.burst - s.tokens) / st.rate * float64(time.Second)))
	reset := full.Unix()
	if full.Nanosecond() != 0 {
		reset++
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(int(st.burst)))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(int(s.tokens)))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
}

// setTokens leaves n tokens in the bucket, as a burst from another client
// would.
func (s *simServer) setTokens(n float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = n
	s.last = s.clock.Now()
}

// limitAt is the server's rate in the given second of the run.
func (s *simServer) limitAt(sec int) float64 {
	r := 0.0
	for _, st := range s.steps {
		if time.Duration(sec)*time.Second >= st.from {
			r = st.rate
		}
	}
	return r
}

// simRun is what the workers of a simulated run got, per second.
type simRun struct {
	good []int // calls that returned 200, by the second they returned
	hits []int // requests the server received
	r429 []int // of which it answered 429
}

// simulate runs workers goroutines calling GET in a loop through rt for d
// of virtual time against srv.
func simulate(clock *simClock, srv *simServer, rt http.RoundTripper, workers int, d time.Duration) simRun {
	start := clock.Now()
	secs := int((d + time.Second - 1) / time.Second)
	good := make([]int, secs)
	var mu sync.Mutex
	for range workers {
		clock.Go(func() {
			for {
				if clock.Now().Sub(start) >= d {
					return
				}
				req, _ := http.NewRequest("GET", "https://api.spotflow.co/api/v1/payments/verify?reference=r", nil)
				resp, err := rt.RoundTrip(req)
				if err != nil {
					// Refused locally (a wait over the cap): a caller would
					// not retry in a tight loop, and in virtual time one that
					// did would stop the clock.
					clock.Sleep(req.Context(), 100*time.Millisecond)
					continue
				}
				resp.Body.Close()
				at := clock.Now().Sub(start)
				if resp.StatusCode == http.StatusOK && at < d {
					mu.Lock()
					good[at/time.Second]++
					mu.Unlock()
				}
			}
		})
	}
	clock.Run()
	run := simRun{good: good, hits: make([]int, secs), r429: make([]int, secs)}
	copy(run.hits, srv.hits)
	copy(run.r429, srv.r429)
	return run
}

// sum adds xs[from:to].
func sum(xs []int, from, to int) int {
	n := 0
	for _, x := range xs[from:min(to, len(xs))] {
		n += x
	}
	return n
}

// table is the per-second curve of a run, as Markdown.
func (r simRun) table(limit func(sec int) float64) string {
	var b strings.Builder
	b.WriteString("| s | limit | goodput | hits | 429 |\n|---:|---:|---:|---:|---:|\n")
	for i := range r.good {
		fmt.Fprintf(&b, "| %d | %.0f | %d | %d | %d |\n", i, limit(i), r.good[i], r.hits[i], r.r429[i])
	}
	return b.String()
}
