package spotflowhttp_test

import (
	"context"
	"crypto/tls"
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

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// Error.Uncertain is true exactly when a request of the call may have
// reached Spotflow without a success being seen.

// net/http sends a keyed create again on its own when a reused keep-alive
// connection dies before the response. If the first delivery committed,
// the call's final 429 says nothing of it: the call must end Uncertain, or
// a caller trusting "429 = not processed" creates the payment again.
func TestKeepAliveResendIsUncertain(t *testing.T) {
	sim := spotflowtest.NewServer(
		spotflowtest.WithRateLimit(0.1, 2),
		spotflowtest.WithFaults(spotflowtest.Faults{Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit}}),
	)
	defer sim.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithMaxAttempts(1))}

	// Warm up a keep-alive connection, so that the create goes over a reused
	// one and net/http may resend it.
	warm, _ := http.NewRequest(http.MethodGet, sim.BaseURL()+"/payments/verify?reference=none", nil)
	warm.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err := client.Do(warm)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	req, _ := http.NewRequest(http.MethodPost, sim.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"metadata":{"order_id":"o-1"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	key := spotflowhttp.IdempotencyKeyOf(resp)
	if n := sim.Arrivals(key); n != 2 {
		t.Fatalf("the key arrived %d times, want 2 (net/http's own resend)", n)
	}
	if n := sim.CountMetadata("order_id", "o-1"); n != 1 {
		t.Fatalf("%d payments, want the first delivery's 1", n)
	}
	e := spotflowhttp.ErrorOf(resp)
	if resp.StatusCode != http.StatusTooManyRequests || e == nil {
		t.Fatalf("status %d, error %v; want the resend's 429", resp.StatusCode, e)
	}
	if !e.Uncertain || e.Attempts != 1 || e.IdempotencyKey != key {
		t.Fatalf("ErrorOf = %+v, want Uncertain with 1 attempt and the key", e)
	}
}

// Without a resend, a 429 is certain: the request was refused.
func TestRefusedCreateIsCertain(t *testing.T) {
	sim := spotflowtest.NewServer(spotflowtest.WithRateLimit(0.1, 1))
	defer sim.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithMaxAttempts(1))}
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodPost, sim.BaseURL()+"/payments",
			strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"}}`))
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if i == 1 {
			e := spotflowhttp.ErrorOf(resp)
			if resp.StatusCode != 429 || e == nil || e.Uncertain {
				t.Fatalf("second create: %d %+v, want a certain 429", resp.StatusCode, e)
			}
		}
	}
}

// h2Server is an HTTP/2 server over TLS whose handler the test sets.
func h2Server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *http.Transport) {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(srv.Close)
	base := srv.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	return srv, base
}

// Over HTTP/2 a stream reset after the request was written (the handler
// panicked: INTERNAL_ERROR) may have been processed: retried when
// repeatable, Uncertain if the call ends without a success.
func TestHTTP2StreamReset(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			var hits atomic.Int64
			var always atomic.Bool
			srv, base := h2Server(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if hits.Add(1) == 1 || always.Load() {
					panic(http.ErrAbortHandler) // resets the stream
				}
				w.WriteHeader(200)
			})
			resp, err := roundTripH2(t, base, method, srv.URL)
			if err != nil {
				t.Fatalf("%v, want the retry's 200", err)
			}
			if resp.ProtoMajor != 2 || resp.StatusCode != 200 || hits.Load() != 2 {
				t.Fatalf("proto %d status %d hits %d, want HTTP/2, 200 after 2", resp.ProtoMajor, resp.StatusCode, hits.Load())
			}

			// Every attempt reset: the call ends Uncertain.
			always.Store(true)
			_, err = roundTripH2(t, base, method, srv.URL)
			var e *spotflowhttp.Error
			if !errors.As(err, &e) || !e.Uncertain || e.Attempts != 2 {
				t.Fatalf("%v, want an uncertain connection error after 2 attempts", err)
			}
		})
	}
}

// Over HTTP/2 a GOAWAY followed by a close, with the request's stream
// taken, may have been processed: retried when repeatable, Uncertain.
func TestHTTP2GoAwayThenClose(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			var hits atomic.Int64
			var once sync.Once
			var srv *httptest.Server
			release := make(chan struct{})
			srv, base := h2Server(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if hits.Add(1) == 1 {
					once.Do(func() {
						// Shut down gracefully (GOAWAY), then give up on
						// the stream in flight: the connection closes.
						go func() {
							ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
							defer cancel()
							srv.Config.Shutdown(ctx)
							srv.CloseClientConnections()
							close(release)
						}()
					})
					<-release
					return
				}
				w.WriteHeader(200)
			})
			_, err := roundTripH2(t, base, method, srv.URL)
			// The server is shut down: the retry cannot connect. What
			// matters is that the first failure was judged repeatable and
			// may-have-been-sent.
			var e *spotflowhttp.Error
			if !errors.As(err, &e) {
				t.Fatalf("%v, want an *Error", err)
			}
			if e.Attempts < 2 || !e.Uncertain {
				t.Fatalf("%+v (%v): want a retry after the GOAWAY and an uncertain outcome", e, e.Err)
			}
		})
	}
}

func roundTripH2(t *testing.T, base http.RoundTripper, method, url string) (*http.Response, error) {
	t.Helper()
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithMaxAttempts(2))
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"amount":1}`)
	}
	req, _ := http.NewRequest(method, url, body)
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// An HTTP/2 stream the server refused was never processed: retried for any
// method, not Uncertain.
func TestHTTP2RefusedStreamIsNeverSent(t *testing.T) {
	var attempts atomic.Int64
	base := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Body != nil {
			req.Body.Close()
		}
		if attempts.Add(1) == 1 {
			return nil, errors.New("http2: Transport: cannot retry err [stream error: stream ID 3; REFUSED_STREAM] after Request.Body was written; define Request.GetBody to avoid this error")
		}
		return answer(200, `{}`), nil
	})
	// A POST without a key or reference is not repeatable once it may have
	// been sent; a refused stream was not sent, so it is retried.
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithKeyMethods())
	req, _ := http.NewRequest(http.MethodPost, "https://"+spotflowHost+"/p", strings.NewReader(`{}`))
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 || attempts.Load() != 2 {
		t.Fatalf("%v, %d attempts; want retried once to a 200", err, attempts.Load())
	}
	resp.Body.Close()

	attempts.Store(-100)
	tr = spotflowhttp.NewTransport(roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		return nil, errors.New("stream error: stream ID 5; REFUSED_STREAM")
	}), spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithMaxAttempts(2))
	req, _ = http.NewRequest(http.MethodPost, "https://"+spotflowHost+"/p", strings.NewReader(`{}`))
	_, err = tr.RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || e.Uncertain || e.Attempts != 2 {
		t.Fatalf("%v, want a certain connection error after 2 attempts", err)
	}
}

// A read error while WithResponseCheck reads the body is the call's error,
// wrapping the context's, with the body closed; never a 200 with a
// truncated body.
func TestResponseCheckReadError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := newReadCloseCounter(&cancellingReader{cancel: cancel})
	base := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: body, Request: req}, nil
	})
	checked := false
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithResponseCheck(func(*http.Response, []byte) *spotflowhttp.Error {
		checked = true
		return nil
	}))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+spotflowHost+"/p", nil)
	resp, err := tr.RoundTrip(req)
	if resp != nil {
		t.Fatalf("got a %d response, want none", resp.StatusCode)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, spotflowhttp.ErrAPIConnection) {
		t.Fatalf("%v, want a connection error wrapping context.Canceled", err)
	}
	var e *spotflowhttp.Error
	if errors.As(err, &e); !e.Uncertain || e.Attempts != 1 {
		t.Fatalf("%+v, want uncertain after 1 attempt", e)
	}
	if checked || body.closes.Load() != 1 {
		t.Fatalf("check ran %v, body closed %d times; want not run, closed once", checked, body.closes.Load())
	}
}

// cancellingReader yields a few bytes, then cancels the request's context
// and fails as a body does when its connection is torn down.
type cancellingReader struct {
	cancel func()
	n      int
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		r.n = copy(p, `{"status":"succ`)
		return r.n, nil
	}
	r.cancel()
	return 0, errors.New("read tcp: use of closed network connection")
}

// Calls answered locally, with nothing sent, are never Uncertain.
func TestLocalAnswersAreCertain(t *testing.T) {
	r := newRoutes()
	r.on(spotflowHost, keyA, func(n int) *http.Response {
		switch n {
		case 1:
			return answer(503, `<html>503</html>`) // uncertain, and then…
		default:
			return answer(401, `{"code":"invalid_credentials"}`) // …the halt
		}
	})
	clock := newFakeClock()
	tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithHaltOnEscalate())
	resp, err := call(t, tr, http.MethodPost, spotflowHost, keyA)
	if err != nil || !spotflowhttp.ErrorOf(resp).Uncertain {
		t.Fatalf("the halting call: %v %+v, want an uncertain 401 (its 503 may have been processed)", err, spotflowhttp.ErrorOf(resp))
	}

	cases := map[string]func() error{
		"halted": func() error { _, err := call(t, tr, http.MethodPost, spotflowHost, keyA); return err },
		"cancelled before sending": func() error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+spotflowHost+"/p", strings.NewReader(`{}`))
			req.Header.Set("Authorization", keyA)
			_, err := spotflowhttp.NewTransport(r).RoundTrip(req)
			return err
		},
		"rate-limit wait refused": func() error {
			tr := spotflowhttp.NewTransport(r, spotflowhttp.WithClock(clock), spotflowhttp.WithRateLimit(0.001, 1))
			call(t, tr, http.MethodGet, spotflowHost, "")
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+spotflowHost+"/p", strings.NewReader(`{}`))
			req.Header.Set("Authorization", keyA)
			_, err := tr.RoundTrip(req)
			return err
		},
	}
	for name, do := range cases {
		t.Run(name, func(t *testing.T) {
			before := r.count(spotflowHost, keyA)
			err := do()
			var e *spotflowhttp.Error
			if !errors.As(err, &e) {
				t.Fatalf("%v, want an *Error", err)
			}
			if e.Uncertain || e.Attempts != 0 {
				t.Fatalf("%+v, want attempts 0 and not uncertain", e)
			}
			if after := r.count(spotflowHost, keyA); after != before {
				t.Fatal("a locally answered call reached the server")
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
