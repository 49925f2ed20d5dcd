package spotflowhttp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotflow-go/spotflowhttp"
)

// A request without a URL is not the stack's to judge: whatever options
// are set, it reaches the base transport, which refuses it, and nothing
// panics, nothing is journaled, the body is closed.
func TestNilURLRequestRefusedWithoutPanic(t *testing.T) {
	observer := &spotflowhttp.Observer{
		AttemptSent: func(context.Context, spotflowhttp.AttemptEvent) {},
		CallDone:    func(context.Context, spotflowhttp.CallEvent) {},
	}
	for _, tc := range []struct {
		name string
		opt  spotflowhttp.Option
	}{
		{"logger", spotflowhttp.WithLogger(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})))},
		{"observer", spotflowhttp.WithObserver(observer)},
		{"journal", spotflowhttp.WithJournal(spotflowhttp.NewMemoryJournal())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := newReadCloseCounter(strings.NewReader(`{}`))
			req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/payments", body)
			req.URL = nil
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("RoundTrip panicked: %v", p)
					}
				}()
				_, err = spotflowhttp.NewTransport(&http.Transport{}, tc.opt).RoundTrip(req)
			}()
			if err == nil {
				t.Fatal("err = nil, want net/http's refusal")
			}
			if n := body.closes.Load(); n != 1 {
				t.Errorf("request body closed %d times, want 1", n)
			}
		})
	}
}

// net/http refuses some requests before anything leaves (no host, a scheme
// it does not speak, an invalid header or method, a nil Header): such a
// call did not reach Spotflow, so it is not uncertain and its journal entry
// does not stay pending.
func TestRequestRefusedByNetHTTPIsNotUncertain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		url    string
		edit   func(*http.Request)
	}{
		{"no host", http.MethodPost, "https:///payments", nil},
		{"unsupported scheme", http.MethodPost, "ftp://api.spotflow.co/payments", nil},
		{"invalid header value", http.MethodPost, "https://api.spotflow.co/payments", func(r *http.Request) { r.Header.Set("X-Note", "a\nb") }},
		{"invalid method", http.MethodPost, "https://api.spotflow.co/payments", func(r *http.Request) { r.Method = "PO ST" }},
		{"nil header GET", http.MethodGet, "https://api.spotflow.co/payments/verify", func(r *http.Request) { r.Header = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := spotflowhttp.NewMemoryJournal()
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(`{"amount":1}`))
			if tc.edit != nil {
				tc.edit(req)
			}
			tr := spotflowhttp.NewTransport(&http.Transport{}, spotflowhttp.WithJournal(j),
				spotflowhttp.WithKeyMethods(http.MethodPost, "PO ST"), spotflowhttp.WithClock(newFakeClock()))
			_, err := tr.RoundTrip(req)
			var e *spotflowhttp.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if e.Uncertain {
				t.Errorf("Uncertain for a request net/http never sent: %v", e)
			}
			if p, _ := j.Pending(context.Background()); len(p) != 0 {
				t.Errorf("%d journal entries left pending, want 0", len(p))
			}
		})
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

// A URL's userinfo is a credential (http.Transport sends it as Basic
// authorization), so the journal, which may be a file, does not keep it.
func TestJournalEntryKeepsNoURLCredential(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, io.ErrUnexpectedEOF // the outcome is uncertain: the entry stays
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithJournal(j), spotflowhttp.WithMaxAttempts(1))
	req, _ := http.NewRequest(http.MethodPost, "https://merchant:sk_live_secret@api.spotflow.co/payments", strings.NewReader(`{"reference":"r1"}`))
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("err = nil, want the connection error")
	}
	p, _ := j.Pending(context.Background())
	if len(p) != 1 {
		t.Fatalf("%d entries pending, want 1", len(p))
	}
	if strings.Contains(p[0].URL, "sk_live_secret") || strings.Contains(p[0].URL, "merchant") {
		t.Errorf("entry URL %q keeps the credential", p[0].URL)
	}
	if p[0].URL != "https://api.spotflow.co/payments" {
		t.Errorf("entry URL %q, want https://api.spotflow.co/payments", p[0].URL)
	}
}

// failingBody is a request or response body whose every read fails.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, errors.New("disk gone") }
func (failingBody) Close() error             { return nil }

// WithReference reads the body before anything is sent; if that read
// fails, nothing is sent: the call fails at once, certain, with the read
// error, and leaves no journal entry.
func TestReferenceBodyReadErrorSendsNothing(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	sent := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		sent++
		_, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: 201, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithJournal(j), spotflowhttp.WithReference("reference"),
		spotflowhttp.WithClock(newFakeClock()))
	req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/payments", failingBody{})
	req.GetBody = func() (io.ReadCloser, error) { return failingBody{}, nil }
	req.ContentLength = 10
	_, err := tr.RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an *Error", err)
	}
	if sent != 0 || e.Uncertain || e.Attempts != 0 || !strings.Contains(err.Error(), "disk gone") {
		t.Errorf("sent %d times, err %v; want nothing sent, 0 attempts, not uncertain, the read error", sent, err)
	}
	if p, _ := j.Pending(context.Background()); len(p) != 0 {
		t.Errorf("%d journal entries pending, want 0", len(p))
	}
}

// The idempotency layer used alone, resolving duplicates, gives a 2xx
// whose body WithResponseCheck could not read as the call's error, as the
// whole stack does, not as a response with a dead body and err == nil.
func TestIdempotencyLayerAloneCheckReadErrorIsTheError(t *testing.T) {
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(io.MultiReader(strings.NewReader("{"), failingBody{})), Request: r}, nil
	})
	tr := spotflowhttp.NewIdempotencyTransport(base, spotflowhttp.WithResolveDuplicates(),
		spotflowhttp.WithResponseCheck(func(*http.Response, []byte) *spotflowhttp.Error { return nil }))
	req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/payments", strings.NewReader(`{}`))
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		resp.Body.Close()
	}
	var e *spotflowhttp.Error
	if resp != nil || !errors.As(err, &e) || !e.Uncertain || !strings.Contains(err.Error(), "disk gone") {
		t.Errorf("resp %v, err %v; want no response and an uncertain *Error with the read error", resp != nil, err)
	}
}

// net/http's HTTP/2 client fails the first stream of a connection whose
// GOAWAY carries an error code and a last stream id below it: the server
// never took the stream, so the request was never processed. It is
// retried for any method and is not uncertain.
func TestHTTP2GoAwayWithErrorCodeOnFirstStreamIsNeverSent(t *testing.T) {
	goAway := errors.New("http2: Transport received GOAWAY from server ErrCode:ENHANCE_YOUR_CALM")
	attempts := 0
	base := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Body != nil {
			req.Body.Close()
		}
		if attempts++; attempts == 1 {
			return nil, goAway
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
	})
	// Without a key or reference, a POST that may have been sent is not
	// repeated.
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithKeyMethods())
	req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/p", strings.NewReader(`{}`))
	resp, err := tr.RoundTrip(req)
	if err != nil || attempts != 2 {
		t.Fatalf("%v after %d attempts; want a retry to the 200", err, attempts)
	}
	resp.Body.Close()

	tr = spotflowhttp.NewTransport(roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		return nil, goAway
	}), spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithMaxAttempts(2))
	req, _ = http.NewRequest(http.MethodPost, "https://api.spotflow.co/p", strings.NewReader(`{}`))
	_, err = tr.RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || e.Uncertain || e.Attempts != 2 {
		t.Fatalf("%v; want a certain connection error after 2 attempts", err)
	}
}

// A Retry-After too far away to obey (over an hour) starts no cool-down;
// it must not teach adaptive pacing either: taken as the end of the
// congestion, it made every later 429 look like the same congestion for
// days: adaptive pacing was off and the cool-downs alone paced, one 429
// each (1.6 % of the requests against a server enforcing 50 req/s).
func TestAdaptiveIgnoresAbsurdRetryAfter(t *testing.T) {
	clock := newFakeClock()
	lim := rate.NewLimiter(50, 50)
	var ok, r429 int
	base := &timedBase{clock: clock, answer: func(now time.Time, n int, r *http.Request) (int, http.Header) {
		res := lim.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			r429++
			ra := strconv.Itoa(int(math.Ceil(d.Seconds())))
			if r429 == 1 {
				ra = "999999" // about 11.5 days
			}
			return 429, headers("Retry-After", ra)
		}
		ok++
		return 200, nil
	}}
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock), spotflowhttp.WithAdaptiveRateLimit())
	start := clock.Now()
	for clock.Now().Sub(start) < time.Minute {
		roundTrip(t, tr, context.Background(), "")
		clock.Advance(time.Millisecond)
	}
	share := float64(r429) / float64(ok+r429)
	goodput := float64(ok) / clock.Now().Sub(start).Seconds()
	t.Logf("%.1f req/s, %d of %d requests answered 429 (%.2f %%)", goodput, r429, ok+r429, share*100)
	if share > 0.005 || goodput < 40 {
		t.Errorf("%.1f req/s with %.2f %% of requests answered 429; want at least 40 req/s and at most 0.5 %%", goodput, share*100)
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

// holdingListener accepts connections and holds them open without a word,
// reading what arrives: a TLS handshake to it never ends, and an HTTP/1
// request sent to it is read but never answered.
func holdingListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// A keyed create whose deadline passes before net/http has a connection
// for it (here during the TLS handshake) was never sent: it is not
// uncertain, and its journal entry is settled. One whose deadline passes
// after it was written stays uncertain.
func TestKeyedCallCutShortBeforeAConnectionIsNotUncertain(t *testing.T) {
	addr := holdingListener(t)
	for _, tc := range []struct {
		name      string
		url       string
		uncertain bool
	}{
		{"TLS handshake never ends", "https://" + addr + "/payments", false},
		{"request written, no answer", "http://" + addr + "/payments", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			defer base.CloseIdleConnections()
			j := spotflowhttp.NewMemoryJournal()
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithJournal(j))
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tc.url, strings.NewReader(`{"amount":1}`))
			_, err := tr.RoundTrip(req)
			var e *spotflowhttp.Error
			if !errors.As(err, &e) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want an *Error wrapping context.DeadlineExceeded", err)
			}
			if e.Uncertain != tc.uncertain {
				t.Errorf("Uncertain = %v, want %v: %v", e.Uncertain, tc.uncertain, e)
			}
			pending, _ := j.Pending(context.Background())
			if want := map[bool]int{false: 0, true: 1}[tc.uncertain]; len(pending) != want {
				t.Errorf("%d journal entries pending, want %d", len(pending), want)
			}
		})
	}
}

// A very large retry budget, meant as "no limit in practice", must not
// overflow into a budget that allows no retry.
func TestLargeRetryBudgetStillRetries(t *testing.T) {
	attempts := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if attempts++; attempts == 1 {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}, nil
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithRetryBudget(math.MaxInt/4+1))
	resp, err := roundTrip(t, tr, context.Background(), "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v after %d attempts; want a retry to the 200", err, attempts)
	}
}
