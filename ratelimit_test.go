package spotflowhttp_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotflow-go/spotflowhttp"
)

func TestLimiterRefuses(t *testing.T) {
	base := &timedBase{clock: newFakeClock()}
	body := newReadCloseCounter(strings.NewReader("{}"))
	req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", body)
	_, err := spotflowhttp.NewRateLimitTransport(base, spotflowhttp.WithLimiter(failingLimiter{})).RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrRateLimit) || !errors.Is(err, errLimiterBroken) {
		t.Fatalf("err = %v", err)
	}
	if len(base.Arrivals()) != 0 || body.closes.Load() != 1 {
		t.Errorf("sent %d, body closed %d times", len(base.Arrivals()), body.closes.Load())
	}
}

// A wait past the deadline fails at once, without sleeping.
func TestRateLimitDeadline(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []spotflowhttp.Option
	}{
		{"token bucket", []spotflowhttp.Option{spotflowhttp.WithRateLimit(1, 1)}},
		{"*rate.Limiter", []spotflowhttp.Option{spotflowhttp.WithLimiter(rate.NewLimiter(1, 1))}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			base := &timedBase{clock: clock}
			tr := spotflowhttp.NewTransport(base, append(tt.opts, spotflowhttp.WithClock(clock))...)
			if _, err := roundTrip(t, tr, context.Background(), ""); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithDeadline(context.Background(), clock.Now().Add(100*time.Millisecond))
			defer cancel()
			body := newReadCloseCounter(strings.NewReader("{}"))
			req, _ := http.NewRequestWithContext(ctx, "POST", "https://api.spotflow.co/x", body)
			_, err := tr.RoundTrip(req)
			var e *spotflowhttp.Error
			if !errors.Is(err, spotflowhttp.ErrRateLimit) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &e) {
				t.Fatalf("err = %v", err)
			}
			if e.Attempts != 0 || e.RetryAfter < 900*time.Millisecond || len(clock.Sleeps()) != 0 || body.closes.Load() != 1 || len(base.Arrivals()) != 1 {
				t.Errorf("Attempts %d RetryAfter %v sleeps %v closes %d arrivals %d", e.Attempts, e.RetryAfter, clock.Sleeps(), body.closes.Load(), len(base.Arrivals()))
			}
		})
	}
}

// A 429 holds back every request through the transport until its
// Retry-After has passed; a later, shorter one does not shorten it.
func TestSharedCoolDown(t *testing.T) {
	clock := newFakeClock()
	var until atomic.Int64
	base := &timedBase{clock: clock, answer: func(now time.Time, n int, r *http.Request) (int, http.Header) {
		switch n {
		case 1:
			until.Store(now.Add(10 * time.Second).UnixNano())
			return 429, headers("Retry-After", "10")
		case 2:
			return 429, headers("Retry-After", "2")
		}
		return 200, nil
	}}
	tr := spotflowhttp.NewRateLimitTransport(base, spotflowhttp.WithClock(clock))
	if resp, _ := roundTrip(t, tr, context.Background(), ""); resp.StatusCode != 429 {
		t.Fatal("want the 429 back: this layer alone does not retry")
	}
	clock.Advance(9 * time.Second) // a request squeezed in... no: it must wait
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := roundTrip(t, tr, context.Background(), ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, at := range base.Arrivals()[1:] {
		if at.UnixNano() < until.Load() {
			t.Errorf("request %d arrived %v before the cool-down ended", i+2, time.Unix(0, until.Load()).Sub(at))
		}
	}
}

func TestCoolDownNotShortened(t *testing.T) {
	clock := newFakeClock()
	start := clock.Now()
	base := &timedBase{clock: clock, answer: func(now time.Time, n int, r *http.Request) (int, http.Header) {
		switch n {
		case 1:
			return 429, headers("Retry-After", "10")
		case 2:
			return 429, headers("Retry-After", "2")
		}
		return 200, nil
	}}
	tr := spotflowhttp.NewRateLimitTransport(base, spotflowhttp.WithClock(clock))
	// The second request waits out the first cool-down, then gets a shorter
	// Retry-After; the third still waits only for that.
	for i, want := range []int{429, 429, 200} {
		if got := statusOf(t, tr); got != want {
			t.Fatalf("request %d: status %d, want %d", i+1, got, want)
		}
	}
	arr := base.Arrivals()
	if d := arr[1].Sub(start); d != 10*time.Second {
		t.Errorf("second request after %v, want 10s", d)
	}
	if d := arr[2].Sub(arr[1]); d != 2*time.Second {
		t.Errorf("third request %v after the second, want 2s", d)
	}
}

// A cool-down longer than the cap is kept, but requests fail at once rather
// than wait it out.
func TestCoolDownOverCap(t *testing.T) {
	clock := newFakeClock()
	base := &timedBase{clock: clock, answer: func(now time.Time, n int, r *http.Request) (int, http.Header) {
		if n == 1 {
			return 429, headers("Retry-After", "120")
		}
		return 200, nil
	}}
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock))
	resp, err := roundTrip(t, tr, context.Background(), "")
	if err != nil || resp.StatusCode != 429 || len(clock.Sleeps()) != 0 {
		t.Fatalf("first call: %v %v, sleeps %v", resp, err, clock.Sleeps())
	}
	clock.Advance(30 * time.Second)
	_, err = roundTrip(t, tr, context.Background(), "")
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrRateLimit) || e.RetryAfter != 90*time.Second || len(base.Arrivals()) != 1 {
		t.Fatalf("err = %v, arrivals %d", err, len(base.Arrivals()))
	}
	clock.Advance(91 * time.Second)
	if resp, err := roundTrip(t, tr, context.Background(), ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the cool-down: %v %v", resp, err)
	}
}

func TestRateLimitHeaderFeedback(t *testing.T) {
	tests := []struct {
		name      string
		remaining string
		reset     func(now time.Time) string
		wait      bool
	}{
		{"exhausted", "0", func(now time.Time) string { return strconv.FormatInt(now.Unix()+3, 10) }, true},
		{"remaining left", "1", func(now time.Time) string { return strconv.FormatInt(now.Unix()+3, 10) }, false},
		{"reset in the past", "0", func(now time.Time) string { return strconv.FormatInt(now.Unix()-5, 10) }, false},
		{"reset negative", "0", func(time.Time) string { return "-1" }, false},
		{"reset over an hour away", "0", func(now time.Time) string { return strconv.FormatInt(now.Unix()+3601, 10) }, false},
		{"reset not an integer", "0", func(now time.Time) string { return strconv.FormatInt(now.Unix()+3, 10) + ".5" }, false},
		{"reset garbage", "0", func(time.Time) string { return "soon" }, false},
		{"remaining garbage", "none", func(now time.Time) string { return strconv.FormatInt(now.Unix()+3, 10) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			var reset string
			base := &timedBase{clock: clock, answer: func(now time.Time, n int, r *http.Request) (int, http.Header) {
				if n == 1 {
					reset = tt.reset(now)
					return 200, headers("X-RateLimit-Limit", "10", "X-RateLimit-Remaining", tt.remaining, "X-RateLimit-Reset", reset)
				}
				return 200, nil
			}}
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock))
			for i := 1; i <= 2; i++ {
				if st := statusOf(t, tr); st != 200 {
					t.Fatalf("request %d: status %d, want 200", i, st)
				}
			}
			arr := base.Arrivals()
			if !tt.wait {
				if len(clock.Sleeps()) != 0 {
					t.Errorf("waited %v on Reset %q", clock.Sleeps(), reset)
				}
				return
			}
			r, _ := strconv.ParseInt(reset, 10, 64)
			if arr[1].Before(time.Unix(r, 0)) {
				t.Errorf("second request at %v, before reset %v", arr[1], time.Unix(r, 0))
			}
		})
	}
}

func spacing(arr []time.Time) []time.Duration {
	var d []time.Duration
	for i := 1; i < len(arr); i++ {
		d = append(d, arr[i].Sub(arr[i-1]))
	}
	return d
}

// paced sends n verify requests through tr one after another with the
// given key, fails the test on any error or non-200, and returns the gaps
// between their arrivals at base.
func paced(t *testing.T, tr http.RoundTripper, base *timedBase, key string, n int) []time.Duration {
	t.Helper()
	for i := 0; i < n; i++ {
		resp, err := roundTrip(t, tr, context.Background(), key)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v, %v; want it paced, not refused", i+1, resp, err)
		}
	}
	arr := base.Arrivals()
	if len(arr) != n {
		t.Fatalf("%d requests arrived, want %d", len(arr), n)
	}
	return spacing(arr)
}

// checkGaps wants the first burst-1 gaps to be 0 and the rest gap, on the
// fake clock (within a microsecond of float rounding in x/time/rate).
func checkGaps(t *testing.T, gaps []time.Duration, burst int, gap time.Duration) {
	t.Helper()
	for i, d := range gaps {
		want := time.Duration(0)
		if i+1 >= burst {
			want = gap
		}
		if d < want-time.Microsecond || d > want+time.Microsecond {
			t.Errorf("gap %d = %v, want %v (gaps %v)", i+1, d, want, gaps)
			return
		}
	}
}

// A token bucket paces: every request is sent, the burst at once, the rest
// 1/r apart.
func TestTokenBucket(t *testing.T) {
	for _, tt := range []struct {
		rate  rate.Limit
		burst int
		gap   time.Duration
	}{
		{10, 1, 100 * time.Millisecond},
		{10, 3, 100 * time.Millisecond},
		{0.5, 2, 2 * time.Second},
	} {
		t.Run(fmt.Sprintf("%v/s burst %d", tt.rate, tt.burst), func(t *testing.T) {
			clock := newFakeClock()
			base := &timedBase{clock: clock}
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithRateLimit(tt.rate, tt.burst))
			checkGaps(t, paced(t, tr, base, "", tt.burst+5), tt.burst, tt.gap)
		})
	}
}

// WithRateLimitByKey paces a key's requests by the documented limit of its
// kind: sk_test_ keys at the test-key rate, sk_live_ keys at the live-key
// rate, others not at all. The key is only looked at.
func TestRateLimitByKey(t *testing.T) {
	for _, tt := range []struct {
		key   string
		burst int
		gap   time.Duration
	}{
		{"sk_test_abc", spotflowhttp.TestKeyBurst, time.Second},
		{"sk_live_abc", spotflowhttp.LiveKeyBurst, 200 * time.Millisecond},
		{"pk_other", 100, 0},
		{"", 100, 0},
	} {
		t.Run(cmp.Or(tt.key, "no key"), func(t *testing.T) {
			clock := newFakeClock()
			base := &timedBase{clock: clock}
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithRateLimitByKey())
			checkGaps(t, paced(t, tr, base, tt.key, min(tt.burst+5, 100)), tt.burst, tt.gap)
		})
	}
}

// An absurd Retry-After on one 429 (decades) does not shut the transport
// for every later call: cool-downs over an hour are ignored, as an
// X-RateLimit-Reset over an hour away is.
func TestCoolDownOverAnHourIgnored(t *testing.T) {
	clock := newFakeClock()
	n := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		n++
		h := http.Header{}
		status := 200
		if n == 1 {
			status = 429
			h.Set("Retry-After", "999999999") // ~31.7 years
		}
		return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock))
	req, _ := http.NewRequest("GET", "https://api.spotflow.co/x", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != 429 {
		t.Fatalf("first: %v %v", resp, err)
	}
	clock.Advance(24 * time.Hour)
	req, _ = http.NewRequest("GET", "https://api.spotflow.co/x", nil)
	_, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("a day later the transport still refuses every request: %v (server hit %d times)", err, n)
	}
}

// In adaptive mode at low traffic, one 429 (say caused by another process
// on the same account) does not drop the pace to the 0.05 req/s floor: one
// request per Retry-After is the least it keeps.
func TestAdaptiveOneRequestPerRetryAfter(t *testing.T) {
	clock := newFakeClock()
	n := 0
	base := &timedBase{clock: clock, answer: func(now time.Time, _ int, r *http.Request) (int, http.Header) {
		n++
		if n == 3 {
			return 429, headers("Retry-After", "1")
		}
		return 200, nil
	}}
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithAdaptiveRateLimit())
	for i := 0; i < 6; i++ {
		if resp, err := roundTrip(t, tr, context.Background(), ""); err != nil || resp.StatusCode != 200 {
			t.Fatalf("call %d: %v, %v", i+1, resp, err)
		}
		clock.Advance(2 * time.Second) // one request every 2 s
	}
	sleeps := clock.Sleeps()
	if n != 7 || len(sleeps) == 0 {
		t.Fatalf("%d requests, waits %v; want 6 calls and the retry of the one answered 429", n, sleeps)
	}
	for _, s := range sleeps {
		if s > 5*time.Second {
			t.Fatalf("one 429 at 0.5 req/s made a request wait %v (waits %v)", s, sleeps)
		}
	}
}

// sleepHook is a fake clock that runs a function on the first Sleep, to
// make things happen while a request waits.
type sleepHook struct {
	*fakeClock
	ran    atomic.Bool
	during func()
}

func (c *sleepHook) Sleep(ctx context.Context, d time.Duration) error {
	err := c.fakeClock.Sleep(ctx, d)
	if c.during != nil && c.ran.CompareAndSwap(false, true) {
		c.during()
	}
	return err
}

// A cool-down extended by another 429 while a request waits out the first
// one is looked at again before the request is sent.
func TestCoolDownExtendedWhileWaiting(t *testing.T) {
	clock := &sleepHook{fakeClock: newFakeClock()}
	var extendedUntil time.Time
	base := &timedBase{clock: clock.fakeClock, answer: func(now time.Time, n int, r *http.Request) (int, http.Header) {
		switch n {
		case 1:
			return 429, headers("Retry-After", "5")
		case 2:
			extendedUntil = now.Add(20 * time.Second)
			return 429, headers("Retry-After", "20")
		}
		return 200, nil
	}}
	tr := spotflowhttp.NewRateLimitTransport(base, spotflowhttp.WithClock(clock))
	if statusOf(t, tr) != 429 { // a cool-down of 5 s
		t.Fatal("want the 429 back")
	}
	// While the next request waits, another one, through the same
	// transport, gets a 429 with Retry-After 20.
	clock.during = func() {
		clock.fakeClock.Advance(-5 * time.Second) // as if it happened when the wait began
		if statusOf(t, tr) != 429 {
			t.Error("want the second 429 back")
		}
	}
	if resp, err := roundTrip(t, tr, context.Background(), ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	arr := base.Arrivals()
	if len(arr) != 3 || extendedUntil.IsZero() {
		t.Fatalf("%d requests arrived, want 3: the 429, the one that extended the cool-down while the last waited, the last", len(arr))
	}
	if last := arr[2]; last.Before(extendedUntil) {
		t.Errorf("sent %v before the extended cool-down ended", extendedUntil.Sub(last))
	}
}

// coolDownRecorder is a CoolDownLimiter that admits everything and records
// the pauses it is told of.
type coolDownRecorder struct {
	mu     sync.Mutex
	ctxs   []context.Context
	untils []time.Time
}

func (l *coolDownRecorder) Wait(context.Context) error { return nil }

func (l *coolDownRecorder) CoolDown(ctx context.Context, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ctxs = append(l.ctxs, ctx)
	l.untils = append(l.untils, until)
}

type ctxMark struct{}

// A Limiter shared with other processes hears of every pause an answer
// asks for, a 429's Retry-After and an exhausted X-RateLimit bank, with the
// time it ends and the caller's context, whether it paces every request
// (WithLimiter) or this request's merchant (WithLimiterFunc).
func TestCoolDownLimiterHearsOfPauses(t *testing.T) {
	clock := newFakeClock()
	reset := clock.Now().Add(40 * time.Second).Truncate(time.Second)
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		until  time.Time
	}{
		{"429 Retry-After", headers("Retry-After", "30"), 429, clock.Now().Add(30 * time.Second)},
		{"X-RateLimit-Remaining 0", headers("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10)), 200, reset},
	} {
		for _, byFunc := range []bool{false, true} {
			lim := &coolDownRecorder{}
			opt := spotflowhttp.WithLimiter(lim)
			if byFunc {
				opt = spotflowhttp.WithLimiterFunc(func(*http.Request) spotflowhttp.Limiter { return lim })
			}
			base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: tc.status, Header: tc.header, Body: http.NoBody, Request: r}, nil
			})
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1), opt)
			ctx := context.WithValue(context.Background(), ctxMark{}, tc.name)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.spotflow.co/api/v1/payments/verify?reference=r", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			lim.mu.Lock()
			if len(lim.untils) != 1 || !lim.untils[0].Equal(tc.until) || lim.ctxs[0].Value(ctxMark{}) != tc.name {
				t.Errorf("%s (limiter func %v): the limiter heard %v, want one pause until %v with the caller's context", tc.name, byFunc, lim.untils, tc.until)
			}
			lim.mu.Unlock()
		}
	}
}

// A 429 to a request sent before a longer cool-down began does not shorten
// that cool-down: request 1 is in flight while request 2 gets Retry-After:
// 10; then request 1 gets Retry-After: 2; request 3 still waits the 10 s.
// (TestCoolDownNotShortened sends its requests one after another, so its
// second 429 arrives after the first pause ended.)
func TestCoolDownNotShortenedByAnswerInFlight(t *testing.T) {
	clock := newFakeClock()
	start := clock.Now()
	inFlight, answerFirst := make(chan struct{}), make(chan struct{})
	var n atomic.Int64
	var third atomic.Int64 // Unix ns of request 3's arrival
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		status, h := 200, http.Header{}
		switch n.Add(1) {
		case 1:
			close(inFlight)
			<-answerFirst
			status = 429
			h.Set("Retry-After", "2")
		case 2:
			status = 429
			h.Set("Retry-After", "10")
		default:
			third.Store(clock.Now().UnixNano())
		}
		return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
	})
	answer := sync.OnceFunc(func() { close(answerFirst) })
	t.Cleanup(answer) // if the test stops early, request 1 still returns
	tr := spotflowhttp.NewRateLimitTransport(base, spotflowhttp.WithClock(clock))
	first := make(chan int, 1)
	go func() {
		resp, err := roundTrip(t, tr, context.Background(), "")
		if err != nil {
			first <- 0
			return
		}
		first <- resp.StatusCode
	}()
	waitFor(t, inFlight, "request 1 to reach the server")
	if got := statusOf(t, tr); got != 429 {
		t.Fatalf("request 2: status %d, want the 429 with Retry-After 10", got)
	}
	answer()
	select {
	case got := <-first:
		if got != 429 {
			t.Fatalf("request 1: status %d, want the 429 with Retry-After 2", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request 1 did not return within 10 s of its answer")
	}
	if got := statusOf(t, tr); got != 200 {
		t.Fatalf("request 3: status %d, want 200", got)
	}
	if d := time.Unix(0, third.Load()).Sub(start); d < 10*time.Second {
		t.Errorf("request 3 left %v after the 10 s cool-down began, want at least 10s: the later answer's Retry-After: 2 shortened it", d)
	}
}

// waitFor waits up to 10 s of real time for ch to be closed, and fails the
// test if it is not: a broken transport must fail the test, not hang it.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10 s for %s", what)
	}
}
