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
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// fakeClock is the simulator package's fake clock: Sleep returns at once and
// moves time on.
type fakeClock = spotflowtest.Clock

func newFakeClock() *fakeClock { return spotflowtest.NewClock(time.Now()) }

// roundTripperFunc is an in-memory RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readCloseCounter counts reads and closes of a body.
type readCloseCounter struct {
	r      io.Reader
	reads  atomic.Int64
	bytes  atomic.Int64
	closes atomic.Int64
}

func newReadCloseCounter(r io.Reader) *readCloseCounter { return &readCloseCounter{r: r} }

func (c *readCloseCounter) Read(p []byte) (int, error) {
	c.reads.Add(1)
	n, err := c.r.Read(p)
	c.bytes.Add(int64(n))
	return n, err
}

func (c *readCloseCounter) Close() error {
	c.closes.Add(1)
	return nil
}

// closeCounting wraps a base transport so that every response body it
// returns counts its closes.
type closeCounting struct {
	base   http.RoundTripper
	mu     sync.Mutex
	bodies []*readCloseCounter
}

func (c *closeCounting) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b := newReadCloseCounter(resp.Body)
	orig := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{b, closerFunc(func() error { b.Close(); return orig.Close() })}
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	return resp, nil
}

// unclosed counts the responses not closed yet.
func (c *closeCounting) unclosed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range c.bodies {
		if b.closes.Load() == 0 {
			n++
		}
	}
	return n
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func constantBackoff(d time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff { return backoff.NewConstantBackOff(d) }
}

// script serves the given responses in order, repeating the last one, and
// counts the requests that reached it.
type script struct {
	srv   *httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	keys  []string
	steps []func(w http.ResponseWriter, r *http.Request)
}

func newScript(t *testing.T, steps ...func(w http.ResponseWriter, r *http.Request)) *script {
	s := &script{steps: steps}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.hits.Add(1))
		s.mu.Lock()
		s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
		s.mu.Unlock()
		io.Copy(io.Discard, r.Body)
		s.steps[min(n, len(s.steps))-1](w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *script) seenKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func reply(status int, body string, header ...string) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// hangUp closes the connection without an answer, after reading the
// request: the client cannot know whether it took effect.
func hangUp(w http.ResponseWriter, r *http.Request) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// get sends a GET through tr; the response body is closed when the test ends.
func get(t *testing.T, tr http.RoundTripper, url string) *http.Response {
	t.Helper()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// mustRequest is a request with an optional body and its GetBody.
func mustRequest(t testing.TB, method, url, body string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// newBody is a request body that counts its closes, and its GetBody.
func newBody(s string) (*readCloseCounter, func() (io.ReadCloser, error)) {
	c := newReadCloseCounter(strings.NewReader(s))
	return c, func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

// Canned answers for a script.
var (
	ok200       = reply(200, `{"status":"successful"}`)
	unavailable = reply(503, `<html>503</html>`)
	serverError = reply(500, `{"code":"server_error","message":"Internal server error"}`)
	rateLimited = func(ra string) func(http.ResponseWriter, *http.Request) {
		return reply(429, `{"code":"rate_limit_exceeded","message":"Too many requests"}`, "Retry-After", ra)
	}
	missingParam = reply(400, `{"error":"Bad Request","message":"missing_parameter","status":400}`)
)

// failingLimiter is a Limiter that always refuses.
type failingLimiter struct{}

var errLimiterBroken = errors.New("limiter broken")

func (failingLimiter) Wait(context.Context) error { return errLimiterBroken }

// statusBase answers the given statuses in order, repeating the last one,
// and counts the requests.
func statusBase(statuses ...int) (http.RoundTripper, *int) {
	n := new(int)
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		s := statuses[min(*n, len(statuses)-1)]
		*n++
		return &http.Response{StatusCode: s, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"code":"x_y"}`)), Request: r}, nil
	}), n
}

// timedBase is an in-memory Spotflow whose answers are chosen by a function
// of the fake time and the request; it records when each request arrived.
type timedBase struct {
	clock    *fakeClock
	mu       sync.Mutex
	arrivals []time.Time
	answer   func(now time.Time, n int, r *http.Request) (int, http.Header)
}

func (b *timedBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	now := b.clock.Now()
	b.mu.Lock()
	b.arrivals = append(b.arrivals, now)
	n := len(b.arrivals)
	b.mu.Unlock()
	status, h := 200, http.Header{}
	if b.answer != nil {
		status, h = b.answer(now, n, r)
	}
	return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
}

func (b *timedBase) Arrivals() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.arrivals...)
}

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// statusOf sends a verify GET through tr and returns the status of the
// response; an error fails the test.
func statusOf(t *testing.T, tr http.RoundTripper) int {
	t.Helper()
	resp, err := roundTrip(t, tr, context.Background(), "")
	if err != nil {
		t.Fatalf("want a response: %v", err)
	}
	return resp.StatusCode
}

// roundTrip sends a verify GET through tr with an optional secret key and
// closes the response body.
func roundTrip(t *testing.T, tr http.RoundTripper, ctx context.Context, auth string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://api.spotflow.co/api/v1/payments/verify?reference=r", nil)
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}
