package spotflowhttp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// When a pause ends, the requests it held back leave at the rate the
// transport knows, spread, not as one burst: 100 of them wait on a 429's
// Retry-After: 1 (or on X-RateLimit-Remaining: 0 until X-RateLimit-Reset)
// from a server that then admits 10 req/s (a token bucket holding one
// second's worth); at most 5 of them meet a second 429, and no 100 ms
// holds more than 2 of them. The rate comes from the server's X-RateLimit
// headers, from the adaptive estimate (learned over 10 s before), or from
// the transport's own bucket. Without any of them the rate is unknown, and
// the control shows what happens then: they go at once and most of them
// meet a 429.
func TestCoolDownRelease(t *testing.T) {
	for _, tt := range []struct {
		name    string
		headers bool
		opts    []spotflowhttp.Option
		learn   bool // call for 10 s before the pause
		hold    bool // the pause is X-RateLimit-Remaining: 0, not a 429
		max429  int
		spread  bool
	}{
		{"429 with X-RateLimit headers", true, nil, false, false, 5, true},
		{"X-RateLimit-Remaining 0", true, nil, false, true, 5, true},
		{"adaptive estimate", false, []spotflowhttp.Option{spotflowhttp.WithAdaptiveRateLimit()}, true, false, 5, true},
		{"token bucket", false, []spotflowhttp.Option{spotflowhttp.WithRateLimit(10, 1)}, false, false, 5, true},
		{"nothing known (control)", false, nil, false, false, 100, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := newSimClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			srv := newSimServer(clock, time.Millisecond, limitStep{0, 10, 10})
			srv.headers = tt.headers
			tr := spotflowhttp.NewTransport(srv, append([]spotflowhttp.Option{spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1)}, tt.opts...)...)
			get := func() int {
				req, _ := http.NewRequest("GET", "https://api.spotflow.co/api/v1/payments/verify?reference=r", nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			var pauseStart time.Time
			var first int // arrivals before the waiters
			got := make([]int, 100)
			clock.Go(func() {
				for start := clock.Now(); tt.learn && clock.Now().Sub(start) < 10*time.Second; {
					get()
				}
				// Another client took the tokens: this request gets the last
				// one (and Remaining: 0), or a 429.
				want := http.StatusTooManyRequests
				if tt.hold {
					srv.setTokens(1)
					want = http.StatusOK
				} else {
					srv.setTokens(0)
				}
				if code := get(); code != want {
					t.Errorf("the request that should start the pause got %d, want %d", code, want)
				}
				pauseStart, first = clock.Now(), len(srv.arrivals)
				for i := range got {
					clock.Go(func() { got[i] = get() })
				}
			})
			clock.Run()
			second := 0
			for _, code := range got {
				if code == http.StatusTooManyRequests {
					second++
				}
			}
			waiters := srv.arrivals[first:]
			t.Logf("%d of 100 met a second 429; they reached the server from %v to %v after the pause began",
				second, waiters[0].Sub(pauseStart), waiters[len(waiters)-1].Sub(pauseStart))
			if second > tt.max429 {
				t.Errorf("%d of the 100 requests held back met a second 429, want at most %d", second, tt.max429)
			}
			for i := range waiters {
				if j := i + 2; tt.spread && j < len(waiters) && waiters[j].Sub(waiters[i]) < 100*time.Millisecond {
					t.Errorf("3 requests held back reached the server within %v after the pause, want them spread",
						waiters[j].Sub(waiters[i]))
					break
				}
			}
		})
	}
}

// The same over loopback, on the real clock, against spotflowtest (a token
// bucket of 10 req/s holding 10, with its X-RateLimit headers): 20 requests
// held back by a 429 leave spread when its cool-down ends, and at most one
// meets a second 429. It takes 2 to 4 s of real time.
func TestCoolDownReleaseOverLoopback(t *testing.T) {
	srv := spotflowtest.NewServer(spotflowtest.WithRateLimit(10, 10))
	defer srv.Close()
	var mu sync.Mutex
	var sent []time.Time
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithMaxAttempts(1))
	get := func() int {
		req, _ := http.NewRequest("GET", srv.BaseURL()+"/payments/verify?reference=r", nil)
		req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Spend the bucket until a 429 starts the cool-down.
	for i := 0; i < 20 && get() != http.StatusTooManyRequests; i++ {
	}
	mu.Lock()
	first := len(sent)
	mu.Unlock()
	var wg sync.WaitGroup
	codes := make([]int, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = get()
		}()
	}
	wg.Wait()
	second := 0
	for _, c := range codes {
		if c == http.StatusTooManyRequests {
			second++
		}
	}
	waiters := sent[first:]
	slices.SortFunc(waiters, time.Time.Compare)
	bunched := 0 // departures less than 50 ms after the one before
	for i := 1; i < len(waiters); i++ {
		if waiters[i].Sub(waiters[i-1]) < 50*time.Millisecond {
			bunched++
		}
	}
	t.Logf("%d of %d met a second 429; they left over %v, %d less than 50 ms after the one before",
		second, len(codes), waiters[len(waiters)-1].Sub(waiters[0]), bunched)
	if second > 1 {
		t.Errorf("%d of %d requests held back met a second 429, want at most 1", second, len(codes))
	}
	if bunched > 2 {
		t.Errorf("%d of %d requests held back left less than 50 ms after the one before, want them spread", bunched, len(codes))
	}
}

// The retry cap bounds a request's whole wait on pauses, also when a second
// pause begins while it waits for its turn in a limiter after the first:
// 2 s of cool-down, then, from another request's 429, 2 s more, is over a
// cap of 3 s, and the request is refused instead of waiting 4 s.
func TestPausesCappedAsAWhole(t *testing.T) {
	clock := newFakeClock()
	n := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		n++
		h := http.Header{}
		status := http.StatusOK
		if n <= 2 { // the first request and the one sent from inside the limiter
			status = http.StatusTooManyRequests
			h.Set("Retry-After", "2")
		}
		return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
	})
	var tr http.RoundTripper
	var inside bool
	lim := limiterFunc(func(ctx context.Context) error {
		if !inside {
			inside = true
			roundTrip(t, tr, context.Background(), "") // meets a 429: a second pause
		}
		return nil
	})
	tr = spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1),
		spotflowhttp.WithMaxRetryAfter(3*time.Second), spotflowhttp.WithLimiter(lim))
	inside = true
	roundTrip(t, tr, context.Background(), "") // 429: a cool-down of 2 s
	inside = false
	start := clock.Now()
	_, err := roundTrip(t, tr, context.Background(), "")
	if !errors.Is(err, spotflowhttp.ErrRateLimit) {
		t.Fatalf("err = %v after %v of waits (%v), want a refusal over the cap", err, clock.Now().Sub(start), clock.Sleeps())
	}
}

// An X-RateLimit-Reset too far away to be a reset (here in milliseconds,
// as some servers send it) is ignored as a hold; it must not set the pace
// after a 429's cool-down either: taken as the window the limit applies
// to, it made a rate of one request in centuries, and every later request
// of the scope was refused locally, for good.
func TestCoolDownReleaseIgnoresAbsurdReset(t *testing.T) {
	clock := newFakeClock()
	n := 0
	base := &timedBase{clock: clock, answer: func(now time.Time, _ int, r *http.Request) (int, http.Header) {
		if n++; n == 1 {
			return 429, headers("Retry-After", "1", "X-RateLimit-Limit", "100",
				"X-RateLimit-Reset", strconv.FormatInt(now.Add(time.Minute).UnixMilli(), 10))
		}
		return 200, nil
	}}
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1))
	if resp, err := roundTrip(t, tr, context.Background(), ""); err != nil || resp.StatusCode != 429 {
		t.Fatalf("%v; want the 429", err)
	}
	// The next calls wait out the cool-down, then go.
	for i := range 5 {
		resp, err := roundTrip(t, tr, context.Background(), "")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("call %d after the 429: %v; want a 200", i+1, err)
		}
		clock.Advance(time.Minute)
	}
}

// releaseRun starts, on a simulation clock at start, a request that gets a
// 429 with the given headers, then held requests during the pause it
// begins, and late requests started lateBy after it, and returns when
// each reached the server: the 429's request first, the rest by arrival,
// with the late ones marked.
func releaseRun(t *testing.T, start time.Time, h http.Header, held, late int, lateBy time.Duration) (arrivals []time.Time, isLate []bool) {
	t.Helper()
	clock := newSimClock(start)
	var mu sync.Mutex
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		defer mu.Unlock()
		arrivals = append(arrivals, clock.Now())
		isLate = append(isLate, r.Context().Value(ctxMark{}) != nil)
		if len(arrivals) == 1 {
			return &http.Response{StatusCode: 429, Header: h, Body: http.NoBody, Request: r}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewRateLimitTransport(base, spotflowhttp.WithClock(clock))
	get := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.spotflow.co/api/v1/payments/verify?reference=r", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	}
	clock.Go(func() {
		get(context.Background()) // the 429
		for range held {
			clock.Go(func() { get(context.Background()) })
		}
		for range late {
			clock.Go(func() {
				ctx := context.WithValue(context.Background(), ctxMark{}, true)
				clock.Sleep(ctx, lateBy)
				get(ctx)
			})
		}
	})
	clock.Run()
	return arrivals, isLate
}

// The rate the X-RateLimit headers state is X-RateLimit-Limit requests by
// X-RateLimit-Reset, counted as at least a second away, since Reset is in
// whole seconds: a Reset 100 ms away (the clock is 900 ms into its second)
// with a Limit of 1 lets the requests a 429 held back leave a second apart,
// not ten times faster.
func TestCoolDownReleaseRateCountsResetAsASecondAtLeast(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 900_000_000, time.UTC)
	h := headers("Retry-After", "1", "X-RateLimit-Limit", "1", "X-RateLimit-Reset", strconv.FormatInt(start.Unix()+1, 10))
	arr, _ := releaseRun(t, start, h, 3, 0, 0)
	if len(arr) != 4 {
		t.Fatalf("%d requests arrived, want 4", len(arr))
	}
	for i := 2; i < len(arr); i++ {
		if gap := arr[i].Sub(arr[i-1]); gap < time.Second-time.Millisecond {
			t.Errorf("held-back requests left %v apart, want 1s: the stated rate of 1 by a Reset 100 ms away lost its floor of a second (gaps %v)",
				gap, spacing(arr))
			break
		}
	}
}

// When a cool-down ends, the requests it held back leave one at a time at
// the stated rate; a request that comes meanwhile, without having waited
// on the pause, takes its turn after them instead of jumping the queue.
func TestCoolDownReleaseLateRequestTakesItsTurn(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// One request a second; the pause ends at 1 s, the late one comes at
	// 1.5 s, while two of the three held back still wait for their turn.
	h := headers("Retry-After", "1", "X-RateLimit-Limit", "1", "X-RateLimit-Reset", strconv.FormatInt(start.Unix()+1, 10))
	arr, late := releaseRun(t, start, h, 3, 1, 1500*time.Millisecond)
	if len(arr) != 5 {
		t.Fatalf("%d requests arrived, want 5", len(arr))
	}
	if !late[len(late)-1] {
		for i := range arr {
			if late[i] {
				t.Errorf("the late request arrived %v after the 429, before %d of the 3 requests the cool-down held back: it jumped the queue",
					arr[i].Sub(arr[0]), len(arr)-1-i)
			}
		}
	}
	for i := 2; i < len(arr); i++ {
		if gap := arr[i].Sub(arr[i-1]); gap < time.Second-time.Millisecond {
			t.Errorf("requests after the cool-down left %v apart (gaps %v), want 1s at the stated rate", gap, spacing(arr))
			break
		}
	}
}
