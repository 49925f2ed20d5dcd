package spotflowhttp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// Found in review: an absurd Retry-After on one 429 (decades) must not
// shut the transport for every later call: cool-downs over an hour are
// ignored, as an X-RateLimit-Reset over an hour away is.
func TestRegressionAbsurdRetryAfterBricks(t *testing.T) {
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

// Found in review: an HTTP-date past 2262 must not overflow into a
// negative wait.
func TestRegressionRetryAfterDateOverflow(t *testing.T) {
	clock := newFakeClock()
	n := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		n++
		h := http.Header{}
		status := 200
		if n == 1 {
			status = 429
			h.Set("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")
		}
		return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock))
	req, _ := http.NewRequest("GET", "https://api.spotflow.co/x", nil)
	tr.RoundTrip(req)
	req, _ = http.NewRequest("GET", "https://api.spotflow.co/x", nil)
	_, err := tr.RoundTrip(req)
	t.Logf("second call right after Retry-After 9999: err=%v hits=%d", err, n)
}

// Found in review: holding the previous failed response open while sending
// the next attempt deadlocked with MaxConnsPerHost=1 when its error body was
// over 64 KiB (not read whole by classification).
func TestRegressionPrevHeldBlocksConnection(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		h := hits
		mu.Unlock()
		if h == 1 {
			w.WriteHeader(503)
			io.WriteString(w, strings.Repeat("x", 100<<10))
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := &http.Transport{MaxConnsPerHost: 1}
	defer base.CloseIdleConnections()
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithBackoff(constantBackoff(time.Millisecond)))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("after %v: %v (hits %d)", time.Since(start).Round(time.Millisecond), err, hits)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// Found in review: with duplicate "reference" keys, parsers disagree on
// which one counts, so the body has no reference for the client: it must not
// resolve the duplicate to another payment.
func TestRegressionDuplicateKeyResolvesWrongResource(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	post := func(tr http.RoundTripper, body string) *http.Response {
		req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	plain := spotflowhttp.NewTransport(nil)
	a := post(plain, `{"reference":"A","amount":111,"currency":"NGN","customer":{"email":"a@b.c"}}`)
	a.Body.Close()
	b := post(plain, `{"reference":"B","amount":222,"currency":"NGN","customer":{"email":"a@b.c"}}`)
	b.Body.Close()
	resolving := spotflowhttp.NewTransport(nil, spotflowhttp.WithResolveDuplicates())
	r := post(resolving, `{"reference":"A","amount":222,"currency":"NGN","customer":{"email":"a@b.c"},"reference":"B"}`)
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	t.Logf("status %d replay=%v body=%s", r.StatusCode, spotflowhttp.ReplayOf(r), body)
	if spotflowhttp.ReplayOf(r) && strings.Contains(string(body), `"reference":"A"`) {
		t.Fatal("the server rejected reference B as a duplicate, but the call was resolved to payment A")
	}
}

// Found in review: a server decoding with Go's encoding/json matches names
// case-insensitively, so a caller's "Reference" is a reference: WithReference
// must not add another.
func TestRegressionReferenceCaseOverwrites(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithReference("reference"))
	req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments",
		strings.NewReader(`{"Reference":"ord-9","amount":100,"currency":"NGN","customer":{"email":"a@b.c"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ps := sim.Payments()
	if len(ps) != 1 || ps[0].Reference != "ord-9" {
		t.Fatalf("payment stored with reference %q, caller sent Reference ord-9", ps[0].Reference)
	}
}

// Found in review: with a custom key header, a caller's Idempotency-Key
// must be copied into the configured header, which the server reads, before
// the POST is retried.
func TestRegressionCustomHeaderCallerKey(t *testing.T) {
	var mu sync.Mutex
	var got []string
	n := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		mu.Lock()
		n++
		got = append(got, r.Header.Get("X-Spotflow-Key"))
		st := 200
		if n == 1 {
			st = 503
		}
		mu.Unlock()
		return &http.Response{StatusCode: st, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithIdempotencyHeader("X-Spotflow-Key"), spotflowhttp.WithClock(newFakeClock()))
	req, _ := http.NewRequest("POST", "https://api.spotflow.co/api/v1/payments", strings.NewReader(`{"amount":1}`))
	req.Header.Set("Idempotency-Key", "order-1")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attempts %d, X-Spotflow-Key sent: %q, key of call %q", n, got, spotflowhttp.IdempotencyKeyOf(resp))
	if n > 1 && got[0] == "" {
		t.Fatal("POST retried after a 503 without the key in the configured header")
	}
}

// Found in review: in adaptive mode at low traffic, one 429 (say caused by
// another process on the same account) dropped the pace to the 0.05 req/s
// floor; one request per Retry-After is now the least it keeps.
func TestRegressionAdaptiveCollapse(t *testing.T) {
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
		roundTrip(t, tr, context.Background(), "")
		clock.Advance(2 * time.Second) // one request every 2 s
	}
	sleeps := clock.Sleeps()
	t.Logf("sleeps: %v", sleeps)
	for _, s := range sleeps {
		if s > 5*time.Second {
			t.Fatalf("one 429 at 0.5 req/s made a request wait %v", s)
		}
	}
}

// Found in review: a connection error on attempt 1 followed by the limiter
// refusing the retry (its wait would pass the deadline) came back as a bare
// rate-limit refusal; the caller should learn of the connection error.
func TestRegressionRefusedRetryKeepsConnectionError(t *testing.T) {
	clock := newFakeClock()
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithRateLimit(0.1, 1))
	ctx, cancel := context.WithDeadline(context.Background(), clock.Now().Add(5*time.Second))
	defer cancel()
	_, err := roundTrip(t, tr, ctx, "")
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrAPIConnection) || !errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, spotflowhttp.ErrRateLimit) || !e.Uncertain || e.Attempts != 1 {
		t.Fatalf("err = %v (%#v)", err, e)
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

// Found in review: a cool-down extended by another 429 while a request
// waited out the first one was not looked at again.
func TestRegressionCoolDownExtendedWhileWaiting(t *testing.T) {
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
	roundTrip(t, tr, context.Background(), "") // 429: cool-down of 5 s
	// While the next request waits, another one, through the same
	// transport, gets a 429 with Retry-After 20.
	clock.during = func() {
		clock.fakeClock.Advance(-5 * time.Second) // as if it happened when the wait began
		roundTrip(t, tr, context.Background(), "")
	}
	if resp, err := roundTrip(t, tr, context.Background(), ""); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	arr := base.Arrivals()
	if last := arr[len(arr)-1]; last.Before(extendedUntil) {
		t.Errorf("sent %v before the extended cool-down ended", extendedUntil.Sub(last))
	}
}
