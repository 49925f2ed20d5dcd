package spotflowhttp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// Every response the transport discards is closed; the final one is
// returned with its body intact; the request body is closed once.
func TestBodiesClosedOnEveryPath(t *testing.T) {
	tests := []struct {
		name  string
		steps []func(http.ResponseWriter, *http.Request)
		opts  []spotflowhttp.Option
		ctx   func() (context.Context, context.CancelFunc)
		err   bool
	}{
		{"success at once", []func(http.ResponseWriter, *http.Request){ok200}, nil, nil, false},
		{"success after retries", []func(http.ResponseWriter, *http.Request){unavailable, unavailable, ok200}, nil, nil, false},
		{"exhausted", []func(http.ResponseWriter, *http.Request){unavailable}, nil, nil, false},
		{"not retryable", []func(http.ResponseWriter, *http.Request){missingParam}, nil, nil, false},
		{"WithErrors", []func(http.ResponseWriter, *http.Request){unavailable}, []spotflowhttp.Option{spotflowhttp.WithErrors()}, nil, true},
		{"deadline", []func(http.ResponseWriter, *http.Request){unavailable, serverError}, nil, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 5*time.Second)
		}, false},
		{"cancelled before start", []func(http.ResponseWriter, *http.Request){ok200}, nil, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, true},
		{"key func fails", []func(http.ResponseWriter, *http.Request){ok200}, []spotflowhttp.Option{spotflowhttp.WithKeyFunc(func(*http.Request) (string, error) {
			return "", errors.New("no order id")
		})}, nil, true},
		{"limiter refuses", []func(http.ResponseWriter, *http.Request){ok200}, []spotflowhttp.Option{spotflowhttp.WithLimiter(failingLimiter{})}, nil, true},
		{"limiter refuses a retry", []func(http.ResponseWriter, *http.Request){rateLimited("120")}, []spotflowhttp.Option{spotflowhttp.WithMaxRetryAfter(200 * time.Second), spotflowhttp.WithRetryBudget(0)}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScript(t, tt.steps...)
			counting := &closeCounting{base: http.DefaultTransport}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			clock := newFakeClock()
			body, getBody := newBody(`{"amount":100}`)
			req, _ := http.NewRequestWithContext(ctx, "POST", s.srv.URL, body)
			req.GetBody = getBody
			req.ContentLength = int64(len(`{"amount":100}`))
			before := req.Header.Clone()
			tr := spotflowhttp.NewTransport(counting, append(tt.opts, spotflowhttp.WithClock(clock))...)
			resp, err := tr.RoundTrip(req)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err == nil {
				if resp.Body == nil {
					t.Fatal("nil body")
				}
				// An error body read whole for classification is closed at
				// once, so the returned one may already be.
				if counting.unclosed() > 1 {
					t.Errorf("%d responses open before the caller closed, want at most the returned one", counting.unclosed())
				}
				if b, _ := io.ReadAll(resp.Body); len(b) == 0 {
					t.Error("returned body is empty")
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			} else if resp != nil {
				t.Error("response and error both returned")
			}
			if n := counting.unclosed(); n != 0 {
				t.Errorf("%d responses left open", n)
			}
			if body.closes.Load() != 1 {
				t.Errorf("request body closed %d times, want 1", body.closes.Load())
			}
			if len(req.Header) != len(before) || req.Header.Get("Idempotency-Key") != "" {
				t.Errorf("caller's header changed: %v", req.Header)
			}
		})
	}
}

// The caller's request is never modified, whatever the layers do.
func TestCallerRequestUntouched(t *testing.T) {
	s := newScript(t, unavailable, ok200)
	body := `{"amount":100,"currency":"NGN"}`
	req, _ := http.NewRequest("POST", s.srv.URL+"/api/v1/payments", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk_test_x")
	ctx := req.Context()
	url := req.URL.String()
	getBody := req.GetBody
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithReference("reference"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(req.Header) != 1 || req.Header.Get("Authorization") != "Bearer sk_test_x" || req.URL.String() != url ||
		req.Context() != ctx || req.ContentLength != int64(len(body)) {
		t.Errorf("request changed: %+v", req)
	}
	b, _ := getBody()
	if got, _ := io.ReadAll(b); string(got) != body {
		t.Errorf("body source changed: %s", got)
	}
	if resp.Request == req {
		t.Error("resp.Request is the caller's request; want the clone that was sent")
	}
}

// A base transport that edits the header of the request it is given (Set,
// Add, Del: which it must not, but some do) edits the stack's copy, never
// the caller's header, whose value slices the copy shares.
func TestBaseHeaderEditsStayInTheCopy(t *testing.T) {
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r.Header.Add("Authorization", "Bearer other")
		r.Header.Add("X-Trace", "b")
		r.Header.Set("Content-Type", "text/plain")
		r.Header.Del("Accept")
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	req, _ := http.NewRequest("POST", "http://spotflow.invalid/api/v1/payments", strings.NewReader(`{}`))
	auth := make([]string, 1, 4) // room to append into, as Header.Add leaves
	auth[0] = "Bearer sk_test_x"
	trace := append(make([]string, 0, 4), "a")
	req.Header = http.Header{"Authorization": auth, "X-Trace": trace, "Content-Type": {"application/json"}, "Accept": {"*/*"}}
	for range 3 {
		resp, err := spotflowhttp.NewTransport(base).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := http.Header{"Authorization": {"Bearer sk_test_x"}, "X-Trace": {"a"}, "Content-Type": {"application/json"}, "Accept": {"*/*"}}
	if !reflect.DeepEqual(req.Header, want) || auth[:2][1] != "" || trace[:2][1] != "" {
		t.Errorf("caller's header became %v (spare capacity %q, %q)", req.Header, auth[:2], trace[:2])
	}
}

func TestEscalation(t *testing.T) {
	for _, tt := range []struct {
		name string
		step func(http.ResponseWriter, *http.Request)
		halt bool
	}{
		{"invalid_credentials", reply(401, `{"code":"invalid_credentials","message":"Invalid API key","statusCode":401}`), true},
		{"401 unknown code", reply(401, `{"code":"AUTH_ERROR","message":"x","statusCode":401}`), true},
		{"401 no body", reply(401, ``), true},
		{"insufficient_balance", reply(400, `{"error":"Bad Request","message":"insufficient_balance","status":400}`), false},
		{"403", reply(403, `{"message":"forbidden"}`), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newScript(t, tt.step, ok200)
			var escalated []*spotflowhttp.Error
			tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithHaltOnEscalate(),
				spotflowhttp.WithOnEscalate(func(_ context.Context, e *spotflowhttp.Error) { escalated = append(escalated, e) }))
			client := &http.Client{Transport: tr}
			resp, err := client.Get(s.srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(escalated) != 1 || escalated[0].Category != spotflowhttp.CategoryEscalate {
				t.Fatalf("escalations = %v", escalated)
			}
			for i := 0; i < 5; i++ {
				body := newReadCloseCounter(strings.NewReader("{}"))
				req, _ := http.NewRequest("POST", s.srv.URL, body)
				resp, err := tr.RoundTrip(req)
				if tt.halt {
					var e *spotflowhttp.Error
					if !errors.As(err, &e) || !errors.Is(err, spotflowhttp.ErrAuthentication) || e.Attempts != 0 || resp != nil {
						t.Fatalf("halted transport returned %v, %v", resp, err)
					}
					if body.closes.Load() != 1 {
						t.Error("request body not closed while halted")
					}
				} else if err != nil {
					t.Fatal(err)
				} else {
					resp.Body.Close()
				}
			}
			want := int64(6)
			if tt.halt {
				want = 1
			}
			if s.hits.Load() != want {
				t.Errorf("server hits = %d, want %d", s.hits.Load(), want)
			}
			tr.Resume()
			resp = get(t, tr, s.srv.URL)
			if resp.StatusCode != 200 {
				t.Errorf("after Resume: %d", resp.StatusCode)
			}
		})
	}
}

// WithErrors: a final non-success is a returned *Error, except treat as
// success.
func TestWithErrors(t *testing.T) {
	s := newScript(t, reply(400, `{"error":"Bad Request","message":"duplicate_reference","status":400}`))
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithErrors())
	resp := get(t, tr, s.srv.URL)
	if e := spotflowhttp.ErrorOf(resp); resp.StatusCode != 400 || e.Category != spotflowhttp.CategoryTreatAsSuccess {
		t.Errorf("duplicate: %d %v", resp.StatusCode, e)
	}
}

// Concurrent use of one Transport, under -race: every fifth call fails once
// and is retried with its own key.
func TestConcurrentUse(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	s := newScript(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Idempotency-Key")]++
		first := seen[r.Header.Get("Idempotency-Key")] == 1
		mu.Unlock()
		if first && r.URL.Query().Get("i") == "0" {
			unavailable(w, r)
			return
		}
		ok200(w, r)
	})
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithBackoff(constantBackoff(time.Millisecond)))
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				resp, err := client.Post(s.srv.URL+"?i="+strconv.Itoa(i%5), "application/json", bytes.NewReader([]byte(`{"i":`+strconv.Itoa(i)+`}`)))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d: %v", resp.StatusCode, spotflowhttp.ErrorOf(resp))
				}
			}
		}()
	}
	wg.Wait()
	if got := s.hits.Load(); got != 480 {
		t.Errorf("server hits = %d, want 400 calls + 80 retries", got)
	}
}

// Responses that break the usual shape (nil header, nil body, status 0, no
// Request) and requests with an unknown length or a failing GetBody are
// handled like any other: retried when the policy says so, annotated, the
// caller's body closed once.
func TestOddResponses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		resp     func(r *http.Request) *http.Response
		get      func() (io.ReadCloser, error)
		cl       int64
		status   int
		attempts int // ErrorOf's Attempts; 0 for no *Error
		sent     int
	}{
		{"nil header 429", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 429, Body: http.NoBody, Request: r}
		}, nil, 2, 429, 4, 4},
		{"nil body 503", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Header: http.Header{}, Request: r}
		}, nil, 2, 503, 4, 4},
		{"status 0 is not retried", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 0, Body: http.NoBody, Request: r}
		}, nil, 2, 0, 0, 1},
		{"unknown request length", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}
		}, nil, -5, 503, 4, 4},
		// WithReference reads the body once and retries from its own copy,
		// so a broken GetBody does not matter.
		{"GetBody error: retried from the reference layer's copy", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}
		}, func() (io.ReadCloser, error) { return nil, errors.New("x") }, 2, 503, 4, 4},
		{"nil request on resp", func(r *http.Request) *http.Response { return &http.Response{StatusCode: 503, Body: http.NoBody} },
			nil, 2, 503, 4, 4},
		{"huge retry-after date", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Header: http.Header{"Retry-After": {"Fri, 31 Dec 9999 23:59:59 GMT"}}, Body: http.NoBody, Request: r}
		}, nil, 2, 503, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := 0
			base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				sent++
				if r.Body != nil {
					r.Body.Close()
				}
				return tc.resp(r), nil
			})
			body := newReadCloseCounter(strings.NewReader(`{}`))
			req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", body)
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(`{}`)), nil }
			if tc.get != nil {
				req.GetBody = tc.get
			}
			req.ContentLength = tc.cl
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithReference("reference"), spotflowhttp.WithAdaptiveRateLimit(), spotflowhttp.WithResponseCheck(func(*http.Response, []byte) *spotflowhttp.Error { return nil }))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("err = %v, want the response", err)
			}
			if resp.Body != nil {
				resp.Body.Close()
			}
			e := spotflowhttp.ErrorOf(resp)
			attempts := 0
			if e != nil {
				attempts = e.Attempts
			}
			if resp.StatusCode != tc.status || sent != tc.sent || attempts != tc.attempts || resp.Request == nil {
				t.Errorf("status %d, ErrorOf %v, sent %d times, Request %v; want status %d, %d attempts in ErrorOf, sent %d times, a Request",
					resp.StatusCode, e, sent, resp.Request != nil, tc.status, tc.attempts, tc.sent)
			}
			if body.closes.Load() != 1 {
				t.Errorf("caller body closed %d times", body.closes.Load())
			}
		})
	}
}

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

// A GET the layers would leave as it is goes to the base as the caller's
// own request, with no copy, and comes back without a record: a success by
// its status, sent once. A first attempt that fails goes through the layers
// as the call's first attempt: retried, and counted.
func TestUnchangedCallIsSentAsIs(t *testing.T) {
	var got []*http.Request
	statuses := []int{200, 503, 200}
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		got = append(got, r)
		return &http.Response{StatusCode: statuses[len(got)-1], Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithBackoff(constantBackoff(0)))
	req := mustRequest(t, "GET", "https://api.spotflow.co/api/v1/payments/verify?reference=r1", "")
	resp, err := tr.RoundTrip(req)
	if err != nil || got[0] != req || resp.Request != req {
		t.Fatalf("first call: %v; the base got the caller's request: %v; resp.Request is it: %v", err, got[0] == req, resp.Request == req)
	}
	if spotflowhttp.ErrorOf(resp) != nil || spotflowhttp.AttemptsOf(resp) != 1 {
		t.Errorf("first call: ErrorOf %v, AttemptsOf %d; want nil, 1", spotflowhttp.ErrorOf(resp), spotflowhttp.AttemptsOf(resp))
	}
	req2 := mustRequest(t, "GET", "https://api.spotflow.co/api/v1/payments/verify?reference=r2", "")
	resp, err = tr.RoundTrip(req2)
	if err != nil || resp.StatusCode != 200 || len(got) != 3 || got[1] != req2 {
		t.Fatalf("second call: %v, %d requests; want the 503 retried, its first attempt the caller's request", err, len(got))
	}
	if got[2] == req2 || spotflowhttp.AttemptsOf(resp) != 2 || spotflowhttp.ErrorOf(resp) != nil {
		t.Errorf("second call: retry sent the caller's request %v, AttemptsOf %d; want a copy, 2", got[2] == req2, spotflowhttp.AttemptsOf(resp))
	}
}
