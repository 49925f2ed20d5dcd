package spotflowhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// Everything the stack learns from an answer applies to the host and the
// credential that got it: one client shared with another API, or one
// transport serving many merchants' keys, must not let one hold back the
// others.

const (
	spotflowHost = "api.spotflow.one"
	otherHost    = "api.other.example"
	keyA         = "Bearer sk_live_merchantA"
	keyB         = "Bearer sk_live_merchantB"
)

// routes answers in memory by host and Authorization header, counting what
// reached each.
type routes struct {
	mu    sync.Mutex
	hits  map[string]int
	reply map[string]func(n int) *http.Response // by "host auth"; n counts from 1
}

func newRoutes() *routes {
	return &routes{hits: map[string]int{}, reply: map[string]func(int) *http.Response{}}
}

func (r *routes) on(host, auth string, fn func(n int) *http.Response) { r.reply[host+" "+auth] = fn }

func (r *routes) count(host, auth string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[host+" "+auth]
}

func (r *routes) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	k := req.URL.Host + " " + req.Header.Get("Authorization")
	r.mu.Lock()
	r.hits[k]++
	n := r.hits[k]
	fn := r.reply[k]
	r.mu.Unlock()
	if fn == nil {
		fn = func(int) *http.Response { return answer(200, `{"status":"successful"}`) }
	}
	resp := fn(n)
	resp.Request = req
	return resp, nil
}

func answer(status int, body string, header ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
}

func always(status int, body string, header ...string) func(int) *http.Response {
	return func(int) *http.Response { return answer(status, body, header...) }
}

// call sends one request through tr and returns the response or error,
// closing the body.
func call(t *testing.T, tr http.RoundTripper, method, host, auth string) (*http.Response, error) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"amount":100,"currency":"NGN"}`)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, "https://"+host+"/api/v1/payments", body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// mustPass asserts that a call went to the server at once: no error, no wait.
func mustPass(t *testing.T, tr http.RoundTripper, clock *fakeClock, r *routes, method, host, auth string) {
	t.Helper()
	before, sleeps := r.count(host, auth), len(clock.Sleeps())
	resp, err := call(t, tr, method, host, auth)
	if err != nil {
		t.Fatalf("%s %s with %q: %v", method, host, auth, err)
	}
	if e := spotflowhttp.ErrorOf(resp); e != nil {
		t.Fatalf("%s %s with %q: %v", method, host, auth, e)
	}
	if got := r.count(host, auth) - before; got != 1 {
		t.Fatalf("%s %s with %q reached the server %d times, want 1", method, host, auth, got)
	}
	if got := clock.Sleeps()[sleeps:]; len(got) != 0 {
		t.Fatalf("%s %s with %q waited %v, want no wait", method, host, auth, got)
	}
}

// pauses are answers that teach the stack to hold a scope back.
var pauses = []struct {
	name  string
	teach func(int) *http.Response
}{
	{"429 Retry-After 30", always(429, `{"code":"rate_limit_exceeded"}`, "Retry-After", "30")},
	{"X-RateLimit-Remaining 0 for 30 min", func(int) *http.Response {
		return answer(200, `{}`, "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(30*time.Minute).Unix(), 10))
	}},
}

// scopeCase is one pair of requests that must not share what the stack
// learns: the "teacher" gets the answers, the "other" must not mind.
type scopeCase struct {
	name                 string
	teachHost, teachAuth string
	otherHost, otherAuth string
}

var scopeCases = []scopeCase{
	{"another host", otherHost, keyA, spotflowHost, keyA},
	{"another key", spotflowHost, keyA, spotflowHost, keyB},
}

func TestPausesAreScopedToHostAndKey(t *testing.T) {
	for _, sc := range scopeCases {
		for _, p := range pauses {
			t.Run(sc.name+"/"+p.name, func(t *testing.T) {
				r := newRoutes()
				r.on(sc.teachHost, sc.teachAuth, p.teach)
				clock := newFakeClock()
				tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1),
					spotflowhttp.WithMaxRetryAfter(time.Hour))
				if _, err := call(t, tr, http.MethodGet, sc.teachHost, sc.teachAuth); err != nil {
					t.Fatal(err)
				}
				mustPass(t, tr, clock, r, http.MethodGet, sc.otherHost, sc.otherAuth)
				mustPass(t, tr, clock, r, http.MethodPost, sc.otherHost, sc.otherAuth)

				// The teacher itself is held back: the pause was learned.
				before := len(clock.Sleeps())
				if _, err := call(t, tr, http.MethodGet, sc.teachHost, sc.teachAuth); err != nil {
					t.Fatal(err)
				}
				if waits := clock.Sleeps()[before:]; len(waits) == 0 || waits[0] < 29*time.Second {
					t.Fatalf("the scope that got %s waited %v, want about 30 s or more", p.name, waits)
				}
			})
		}
	}
}

func TestHaltIsScopedToHostAndKey(t *testing.T) {
	for _, sc := range scopeCases {
		t.Run(sc.name, func(t *testing.T) {
			r := newRoutes()
			r.on(sc.teachHost, sc.teachAuth, always(401, `{"code":"invalid_credentials","message":"Invalid API key A"}`))
			r.on(sc.otherHost, sc.otherAuth, func(n int) *http.Response {
				if n == 2 {
					return answer(401, `{"code":"invalid_credentials","message":"Invalid API key B"}`)
				}
				return answer(200, `{}`)
			})
			clock := newFakeClock()
			tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithHaltOnEscalate())
			if _, err := call(t, tr, http.MethodGet, sc.teachHost, sc.teachAuth); err != nil {
				t.Fatal(err)
			}
			mustPass(t, tr, clock, r, http.MethodPost, sc.otherHost, sc.otherAuth)

			// The halted scope is answered locally, with its own 401, sent
			// by nothing of this call: not uncertain, no key.
			_, err := call(t, tr, http.MethodPost, sc.teachHost, sc.teachAuth)
			var e *spotflowhttp.Error
			if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrAuthentication) {
				t.Fatalf("halted call: %v, want the 401 *Error", err)
			}
			if e.Attempts != 0 || e.Uncertain || e.IdempotencyKey != "" || !strings.Contains(e.Message, "key A") {
				t.Fatalf("halted call's error = %+v, want attempts 0, not uncertain, no key, A's message", e)
			}
			if got := r.count(sc.teachHost, sc.teachAuth); got != 1 {
				t.Fatalf("halted scope reached the server %d times, want 1", got)
			}

			// The other scope gets its own 401 and its own halt.
			resp, err := call(t, tr, http.MethodGet, sc.otherHost, sc.otherAuth)
			if err != nil || spotflowhttp.ErrorOf(resp) == nil || !strings.Contains(spotflowhttp.ErrorOf(resp).Message, "key B") {
				t.Fatalf("other scope's 401: %v %v, want its own message", err, spotflowhttp.ErrorOf(resp))
			}
			_, err = call(t, tr, http.MethodGet, sc.otherHost, sc.otherAuth)
			if !errors.As(err, &e) || !strings.Contains(e.Message, "key B") {
				t.Fatalf("other scope after its 401: %v, want halted with B's message", err)
			}

			// Keys rotated.
			r.on(sc.teachHost, sc.teachAuth, always(200, `{}`))
			r.on(sc.otherHost, sc.otherAuth, always(200, `{}`))
			tr.Resume()
			mustPass(t, tr, clock, r, http.MethodGet, sc.teachHost, sc.teachAuth)
			mustPass(t, tr, clock, r, http.MethodGet, sc.otherHost, sc.otherAuth)
		})
	}
}

// An outage of one host spends that host's retry budget only.
func TestRetryBudgetIsPerHost(t *testing.T) {
	r := newRoutes()
	r.on(otherHost, keyA, always(503, `<html>503</html>`))
	r.on(spotflowHost, keyA, func(n int) *http.Response {
		if n == 1 {
			return answer(502, `<html>502</html>`)
		}
		return answer(200, `{}`)
	})
	clock := newFakeClock()
	tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithRetryBudget(3))
	for range 4 {
		call(t, tr, http.MethodGet, otherHost, keyA)
	}
	if got := r.count(otherHost, keyA); got != 4+3 {
		t.Fatalf("the failing host got %d requests, want 4 calls + 3 retries from the budget", got)
	}
	resp, err := call(t, tr, http.MethodGet, spotflowHost, keyA)
	if err != nil || spotflowhttp.ErrorOf(resp) != nil || r.count(spotflowHost, keyA) != 2 {
		t.Fatalf("Spotflow's 502 after another host's outage: %v %v, %d requests; want retried once and 200",
			err, spotflowhttp.ErrorOf(resp), r.count(spotflowHost, keyA))
	}
}

// Adaptive pacing learned from one key's 429s does not pace another key.
func TestAdaptiveRateIsPerKey(t *testing.T) {
	r := newRoutes()
	r.on(spotflowHost, keyA, func(n int) *http.Response {
		if n%2 == 0 {
			return answer(429, `{"code":"rate_limit_exceeded"}`)
		}
		return answer(200, `{}`)
	})
	clock := newFakeClock()
	tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1),
		spotflowhttp.WithAdaptiveRateLimit())
	for range 50 {
		call(t, tr, http.MethodGet, spotflowHost, keyA)
	}
	if len(clock.Sleeps()) == 0 {
		t.Fatal("key A's 429s paced nothing: the adaptive limiter learned nothing")
	}
	for range 50 {
		// A key of its own starts paced at 100 req/s (the slow start).
		clock.Advance(10 * time.Millisecond)
		mustPass(t, tr, clock, r, http.MethodGet, spotflowHost, keyB)
	}
}

// Each key gets a bucket of its own at its preset: B's first request does
// not wait for A's burst.
func TestRateLimitByKeyBucketPerKey(t *testing.T) {
	r := newRoutes()
	clock := newFakeClock()
	tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithRateLimitByKey())
	for range spotflowhttp.LiveKeyBurst {
		mustPass(t, tr, clock, r, http.MethodGet, spotflowHost, keyA)
	}
	mustPass(t, tr, clock, r, http.MethodGet, spotflowHost, keyB)
	before := len(clock.Sleeps())
	if _, err := call(t, tr, http.MethodGet, spotflowHost, keyA); err != nil {
		t.Fatal(err)
	}
	if waits := clock.Sleeps()[before:]; len(waits) != 1 || waits[0] <= 0 || waits[0] > time.Second/time.Duration(spotflowhttp.LiveKeyRate) {
		t.Fatalf("A past its burst waited %v, want one wait of at most 1/%v s", waits, spotflowhttp.LiveKeyRate)
	}
}

// WithHosts: a request for any other host goes to the base transport as the
// caller made it: no key, no retry, no pacing, no annotation.
func TestWithHostsPassesOthersThrough(t *testing.T) {
	r := newRoutes()
	r.on(otherHost, keyA, always(503, `<html>503</html>`))
	var seen []*http.Request
	base := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		seen = append(seen, req)
		return r.RoundTrip(req)
	})
	clock := newFakeClock()
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithHosts("API.Spotflow.one"),
		spotflowhttp.WithRateLimit(1, 1))

	for i := range 3 {
		req, _ := http.NewRequest(http.MethodPost, "https://"+otherHost+"/v1/things", strings.NewReader(`{}`))
		req.Header.Set("Authorization", keyA)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if seen[len(seen)-1] != req {
			t.Fatal("the base got a copy, want the caller's request itself")
		}
		if k := req.Header.Get(spotflowhttp.IdempotencyKeyHeader); k != "" || spotflowhttp.IdempotencyKeyOf(resp) != "" {
			t.Fatalf("call %d got key %q", i, k)
		}
		if resp.Request != req {
			t.Fatal("the response is annotated, want it as the base returned it")
		}
	}
	if got := r.count(otherHost, keyA); got != 3 {
		t.Fatalf("3 calls to another host reached it %d times, want 3 (no retries)", got)
	}
	if len(clock.Sleeps()) != 0 {
		t.Fatalf("calls to another host waited %v, want no pacing", clock.Sleeps())
	}

	// The listed host, on any port, gets the policy.
	for _, host := range []string{spotflowHost, spotflowHost + ":443", "API.SPOTFLOW.ONE"} {
		req, _ := http.NewRequest(http.MethodPost, "https://"+host+"/api/v1/payments", strings.NewReader(`{}`))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if spotflowhttp.IdempotencyKeyOf(resp) == "" {
			t.Fatalf("%s: no key, want the policy", host)
		}
	}
}

func TestWithHostsPortMatching(t *testing.T) {
	r := newRoutes()
	tr := spotflowhttp.NewTransport(r, spotflowhttp.WithHosts("localhost:8080", "[::1]", "::2", "secure.example:443"))
	for _, c := range []struct {
		url    string
		policy bool
	}{
		{"http://localhost:8080", true}, {"http://LOCALHOST:8080", true}, {"http://localhost:9090", false}, {"http://localhost", false},
		{"https://[::1]:8443", true}, {"http://[::1]", true}, {"https://[::3]:8443", false},
		{"https://[::2]:8443", true},                                           // listed without brackets
		{"https://secure.example", true}, {"https://secure.example:443", true}, // the scheme's default port
		{"http://secure.example", false}, {"https://secure.example:8443", false},
	} {
		req, _ := http.NewRequest(http.MethodPost, c.url+"/p", strings.NewReader(`{}`))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := spotflowhttp.IdempotencyKeyOf(resp) != ""; got != c.policy {
			t.Errorf("%s: policy %v, want %v", c.url, got, c.policy)
		}
	}
}

// WithHosts with nothing to match, or with a URL where a host belongs,
// would give the policy to the wrong requests: it panics, naming itself.
func TestWithHostsRefusesWhatIsNoHost(t *testing.T) {
	for _, hosts := range [][]string{nil, {""}, {"  "}, {"https://api.spotflow.co"}, {"api.spotflow.co/api"}, {"api.spotflow.co:https"}} {
		func() {
			defer func() {
				if p, _ := recover().(string); !strings.Contains(p, "WithHosts") {
					t.Errorf("WithHosts(%q): panic %q, want one naming WithHosts", hosts, p)
				}
			}()
			spotflowhttp.WithHosts(hosts...)
		}()
	}
}

// A transport serving a million keys keeps a bounded number of scopes; one
// with an active pause is kept while idle ones are forgotten.
func TestScopesBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 20,000 requests")
	}
	r := newRoutes()
	r.on(spotflowHost, keyA, always(429, `{}`, "Retry-After", "600"))
	clock := newFakeClock()
	tr := spotflowhttp.NewTransport(roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Header.Get("Authorization") == keyA {
			return r.RoundTrip(req)
		}
		return answer(200, ``), nil
	}), spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1), spotflowhttp.WithRateLimitByKey(),
		spotflowhttp.WithMaxRetryAfter(time.Hour))
	call(t, tr, http.MethodGet, spotflowHost, keyA)
	for i := range 20000 {
		if _, err := call(t, tr, http.MethodGet, spotflowHost, fmt.Sprintf("Bearer sk_live_%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := spotflowhttp.ScopeCount(tr); n > 4096 {
		t.Fatalf("%d scopes after 20,001 keys, want at most 4096", n)
	}
	before := len(clock.Sleeps())
	call(t, tr, http.MethodGet, spotflowHost, keyA)
	if len(clock.Sleeps()) == before {
		t.Fatal("the scope with an active cool-down was forgotten")
	}
}

// WithHosts is read by every layer: the idempotency layer used alone gives
// no key to a request for another host.
func TestIdempotencyLayerAloneKeepsToWithHosts(t *testing.T) {
	var got http.Header
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		got = r.Header
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewIdempotencyTransport(base, spotflowhttp.WithHosts("api.spotflow.co"))
	req, _ := http.NewRequest(http.MethodPost, "https://api.other.example/orders", strings.NewReader(`{}`))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if k := got.Get(spotflowhttp.IdempotencyKeyHeader); k != "" {
		t.Errorf("request for another host got key %q", k)
	}
}

// A host is a host whatever its case: a 429 from API.spotflow.co holds back
// requests to api.spotflow.co with the same credential, and the other way
// round, as both reach the same server.
func TestPauseScopeIgnoresHostCase(t *testing.T) {
	for _, hosts := range [][2]string{{"API.spotflow.co", "api.spotflow.co"}, {"api.spotflow.co", "Api.Spotflow.Co"}} {
		t.Run(hosts[0]+" then "+hosts[1], func(t *testing.T) {
			r := newRoutes()
			r.on(hosts[0], keyA, always(429, `{"code":"rate_limit_exceeded"}`, "Retry-After", "30"))
			clock := newFakeClock()
			tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(1))
			if resp, err := call(t, tr, http.MethodGet, hosts[0], keyA); err != nil || resp.StatusCode != 429 {
				t.Fatalf("first call: %v, %v; want the 429", resp, err)
			}
			start := clock.Now()
			if resp, err := call(t, tr, http.MethodGet, hosts[1], keyA); err != nil || resp.StatusCode != 200 {
				t.Fatalf("second call: %v, %v; want a 200 after the cool-down", resp, err)
			}
			if waited := clock.Now().Sub(start); waited < 30*time.Second {
				t.Errorf("the call to %s waited %v after a 429 with Retry-After 30 from %s, want 30s: the host's case made it another scope",
					hosts[1], waited, hosts[0])
			}
		})
	}
}

// A host's spent retry budget is not forgotten when a flood of other hosts
// makes the registry of scopes shrink: the budget is what caps the extra
// traffic of an outage, and forgetting it would hand the failing host a
// fresh one.
func TestSpentRetryBudgetSurvivesAFloodOfHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 10,000 requests")
	}
	const down = "down.spotflow.example"
	var downHits atomic.Int64
	base := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Host == down {
			downHits.Add(1)
			return answer(503, `<html>503</html>`), nil
		}
		return answer(200, `{}`), nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithRetryBudget(2),
		spotflowhttp.WithBackoff(constantBackoff(time.Second)))
	if _, err := call(t, tr, http.MethodGet, down, ""); err != nil {
		t.Fatal(err)
	}
	if n := downHits.Load(); n != 3 {
		t.Fatalf("the first call to the failing host reached it %d times, want 3: one attempt and the budget's 2 retries", n)
	}
	// The flood is of creates, which every layer handles (a key, a scope),
	// so that it fills the registry whatever shortcut a quiet GET may take.
	for i := range 10000 {
		if _, err := call(t, tr, http.MethodPost, fmt.Sprintf("h%d.example", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	before := downHits.Load()
	if _, err := call(t, tr, http.MethodGet, down, ""); err != nil {
		t.Fatal(err)
	}
	if n := downHits.Load() - before; n != 1 {
		t.Errorf("after 10,000 other hosts, a call to the failing host reached it %d times, want 1: its spent budget was forgotten", n)
	}
}
