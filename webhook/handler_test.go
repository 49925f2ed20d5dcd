package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
	"github.com/spotflow-go/spotflowhttp/webhook"
)

// The secrets of the tests, in the form Spotflow's dashboard shows them.
const (
	secret      = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	otherSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

// t0 is the time of the tests' fake clock.
var t0 = time.Unix(1_700_000_000, 0).UTC()

const paymentBody = `{"event":"payment_successful","data":{"id":"pay_1","reference":"order-17","status":"successful","amount":5000,"currency":"NGN"}}`

// sign returns the Standard Webhooks signature of a delivery, computed here
// with crypto/hmac rather than the library the Handler uses, so that the
// tests check the Handler against the specification, not the library
// against itself.
func sign(t testing.TB, secret, id string, at int64, body string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + strconv.FormatInt(at, 10) + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// request is a delivery signed with secret at t0 unless changed.
func request(t testing.TB, id, body string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(body))
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", strconv.FormatInt(t0.Unix(), 10))
	r.Header.Set("webhook-signature", sign(t, secret, id, t0.Unix(), body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// calls records the events a Handler's function was given, and answers
// with the error fail returns for the nth call (from 1), if fail is set.
type calls struct {
	mu     sync.Mutex
	events []webhook.Event
	fail   func(n int) error
}

func (c *calls) fn(_ context.Context, ev webhook.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, ev)
	if c.fail != nil {
		return c.fail(len(c.events))
	}
	return nil
}

func (c *calls) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// newHandler is webhook.NewHandler on a fake clock at t0, for arguments
// that must be valid.
func newHandler(t testing.TB, fn func(context.Context, webhook.Event) error, opts ...webhook.Option) *webhook.Handler {
	t.Helper()
	clock := spotflowtest.NewClock(t0)
	h, err := webhook.NewHandler(secret, fn, append([]webhook.Option{webhook.WithClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// serve has h answer r in memory. A delivery that waits for another gives
// up after a time that only a broken Handler reaches, so that a test of it
// fails rather than hangs.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r.WithContext(ctx))
	return w
}

// TestHandlerDelivery covers each kind of delivery once, on a new Handler:
// its answer, whether the function ran, and that neither the answer nor
// the log shows a secret or the expected signature.
func TestHandlerDelivery(t *testing.T) {
	const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	good := sign(t, secret, id, t0.Unix(), paymentBody)
	at := func(d time.Duration) func(*http.Request) {
		return func(r *http.Request) {
			ts := t0.Add(d).Unix()
			r.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
			r.Header.Set("webhook-signature", sign(t, secret, id, ts, paymentBody))
		}
	}
	withBody := func(body string) func(*http.Request) {
		return func(r *http.Request) {
			*r = *request(t, id, body)
		}
	}
	tests := []struct {
		name   string
		opts   []webhook.Option
		change func(*http.Request)
		status int
		called bool
	}{
		{name: "valid", status: 200, called: true},
		{name: "x-spotflow-signature instead of webhook-signature", status: 200, called: true, change: func(r *http.Request) {
			r.Header.Del("webhook-signature")
			r.Header.Set("x-spotflow-signature", good)
		}},
		{name: "x-spotflow-signature right, webhook-signature wrong", status: 200, called: true, change: func(r *http.Request) {
			r.Header.Set("webhook-signature", sign(t, otherSecret, id, t0.Unix(), paymentBody))
			r.Header.Set("x-spotflow-signature", good)
		}},
		{name: "one right signature among several", status: 200, called: true, change: func(r *http.Request) {
			r.Header.Set("webhook-signature", "v1a,c29tZXRoaW5n "+sign(t, otherSecret, id, t0.Unix(), paymentBody)+" "+good)
		}},
		{name: "signed with a rotated-in secret", opts: []webhook.Option{webhook.WithSecrets(otherSecret)}, status: 200, called: true, change: func(r *http.Request) {
			r.Header.Set("webhook-signature", sign(t, otherSecret, id, t0.Unix(), paymentBody))
		}},
		{name: "timestamp at the edge of the past tolerance", status: 200, called: true, change: at(-5 * time.Minute)},
		{name: "timestamp at the edge of the future tolerance", status: 200, called: true, change: at(5 * time.Minute)},
		{name: "object without data", status: 200, called: true, change: withBody(`{"event":"ping"}`)},

		{name: "GET", status: 405, change: func(r *http.Request) { r.Method = http.MethodGet }},
		{name: "PUT", status: 405, change: func(r *http.Request) { r.Method = http.MethodPut }},
		{name: "no webhook-id", status: 400, change: func(r *http.Request) { r.Header.Del("webhook-id") }},
		{name: "no webhook-timestamp", status: 400, change: func(r *http.Request) { r.Header.Del("webhook-timestamp") }},
		{name: "no signature", status: 400, change: func(r *http.Request) { r.Header.Del("webhook-signature") }},
		{name: "blank signature", status: 400, change: func(r *http.Request) { r.Header.Set("webhook-signature", "  ") }},
		{name: "timestamp not a number", status: 400, change: func(r *http.Request) { r.Header.Set("webhook-timestamp", "2023-11-14T22:13:20Z") }},
		{name: "signed with another secret", status: 403, change: func(r *http.Request) {
			r.Header.Set("webhook-signature", sign(t, otherSecret, id, t0.Unix(), paymentBody))
		}},
		{name: "body changed after signing", status: 403, change: func(r *http.Request) {
			tampered := strings.Replace(paymentBody, "successful", "failed", 2)
			*r = *request(t, id, tampered)
			r.Header.Set("webhook-signature", good)
		}},
		{name: "id changed after signing", status: 403, change: func(r *http.Request) { r.Header.Set("webhook-id", id+"x") }},
		{name: "timestamp changed after signing", status: 403, change: func(r *http.Request) {
			r.Header.Set("webhook-timestamp", strconv.FormatInt(t0.Unix()+1, 10))
		}},
		{name: "signature of another version", status: 403, change: func(r *http.Request) {
			r.Header.Set("webhook-signature", "v2,"+strings.TrimPrefix(good, "v1,"))
		}},
		{name: "signature without version", status: 403, change: func(r *http.Request) {
			r.Header.Set("webhook-signature", strings.TrimPrefix(good, "v1,"))
		}},
		{name: "timestamp too old", status: 403, change: at(-5*time.Minute - time.Second)},
		{name: "timestamp too new", status: 403, change: at(5*time.Minute + time.Second)},
		{name: "timestamp too old for a shorter tolerance", opts: []webhook.Option{webhook.WithTolerance(time.Minute)}, status: 403, change: at(-61 * time.Second)},
		{name: "body over the maximum, length declared", opts: []webhook.Option{webhook.WithMaxBodyBytes(64)}, status: 413},
		{name: "body over the maximum, chunked", opts: []webhook.Option{webhook.WithMaxBodyBytes(64)}, status: 413, change: func(r *http.Request) {
			r.ContentLength = -1
		}},
		{name: "body at the maximum", opts: []webhook.Option{webhook.WithMaxBodyBytes(int64(len(paymentBody)))}, status: 200, called: true},
		{name: "body a JSON array", status: 400, change: withBody(`[{"event":"payment_successful"}]`)},
		{name: "body null", status: 400, change: withBody(`null`)},
		{name: "body a JSON string", status: 400, change: withBody(`"{}"`)},
		{name: "body empty", status: 400, change: withBody(``)},
		{name: "body not JSON", status: 400, change: withBody(`{event: payment_successful}`)},
		{name: "body an object followed by more", status: 400, change: withBody(`{"event":"a"}{"event":"b"}`)},
		{name: "body a truncated object", status: 400, change: withBody(paymentBody[:40])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			c := &calls{}
			h := newHandler(t, c.fn, append(tt.opts,
				webhook.WithLogger(slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))))...)
			r := request(t, id, paymentBody)
			if tt.change != nil {
				tt.change(r)
			}
			w := serve(h, r)
			if w.Code != tt.status {
				t.Errorf("status %d, want %d; body %q", w.Code, tt.status, w.Body)
			}
			if got := c.count() == 1; got != tt.called || c.count() > 1 {
				t.Errorf("function called %d times, want called: %v", c.count(), tt.called)
			}
			if tt.status == 405 && w.Header().Get("Allow") != "POST" {
				t.Errorf("405 with Allow %q, want POST", w.Header().Get("Allow"))
			}
			if tt.status >= 400 && log.Len() == 0 {
				t.Error("a refused delivery was not logged")
			}
			// What must stay private: each secret's key, and the signature
			// the Handler computes for what it was sent.
			sent := r.Header.Get("webhook-timestamp")
			ts, _ := strconv.ParseInt(sent, 10, 64)
			private := []string{strings.TrimPrefix(secret, "whsec_"), strings.TrimPrefix(otherSecret, "whsec_"), secret,
				strings.TrimPrefix(sign(t, secret, r.Header.Get("webhook-id"), ts, paymentBody), "v1,")}
			for _, p := range private {
				if strings.Contains(w.Body.String(), p) || strings.Contains(log.String(), p) {
					t.Errorf("%q leaked: answer %q, log %q", p, w.Body, &log)
				}
			}
		})
	}
}

// TestHandlerTooLongUnread checks that a body declared longer than the
// maximum is refused without being read.
func TestHandlerTooLongUnread(t *testing.T) {
	c := &calls{}
	h := newHandler(t, c.fn, webhook.WithMaxBodyBytes(64))
	r := request(t, "msg_1", paymentBody)
	r.Body = io.NopCloser(iotest.ErrReader(errors.New("the body was read")))
	if w := serve(h, r); w.Code != 413 || c.count() != 0 {
		t.Errorf("status %d, %d calls; want 413 and none", w.Code, c.count())
	}
}

// TestHandlerLeavesRequestAlone: joining the two signature headers does
// not write into the request's header, even where its slice has room.
func TestHandlerLeavesRequestAlone(t *testing.T) {
	h := newHandler(t, (&calls{}).fn)
	r := request(t, "msg_1", paymentBody)
	sigs := make([]string, 1, 2)
	sigs[0] = "v1,c29tZXRoaW5n"
	r.Header["Webhook-Signature"] = sigs
	r.Header.Set("x-spotflow-signature", sign(t, secret, "msg_1", t0.Unix(), paymentBody))
	if w := serve(h, r); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if spare := sigs[:2][1]; spare != "" {
		t.Errorf("the request's header was written to: %q", spare)
	}
}

// TestHandlerEvent checks the Event the function gets.
func TestHandlerEvent(t *testing.T) {
	var got webhook.Event
	h := newHandler(t, func(_ context.Context, ev webhook.Event) error { got = ev; return nil })
	if w := serve(h, request(t, "msg_1", paymentBody)); w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	want := webhook.Event{
		ID:        "msg_1",
		Type:      "payment_successful",
		Timestamp: t0,
		Reference: "order-17",
		Status:    "successful",
		Data:      json.RawMessage(`{"id":"pay_1","reference":"order-17","status":"successful","amount":5000,"currency":"NGN"}`),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("event\n%+v, want\n%+v", got, want)
	}

	// Members of other types are left empty rather than refused: the sender
	// would only repeat a refused delivery.
	got = webhook.Event{}
	odd := `{"event":7,"data":{"reference":null,"status":["x"]}}`
	if w := serve(h, request(t, "msg_2", odd)); w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if got.ID != "msg_2" || got.Type != "" || got.Reference != "" || got.Status != "" || string(got.Data) != `{"reference":null,"status":["x"]}` {
		t.Errorf("event %+v", got)
	}
}

// TestHandlerContext checks that the function gets the request's context.
func TestHandlerContext(t *testing.T) {
	type key struct{}
	var got any
	h := newHandler(t, func(ctx context.Context, _ webhook.Event) error { got = ctx.Value(key{}); return nil })
	r := request(t, "msg_1", paymentBody)
	serve(h, r.WithContext(context.WithValue(r.Context(), key{}, "mine")))
	if got != "mine" {
		t.Errorf("the function's context has %v, want the request's value", got)
	}
}

// TestHandlerRedelivery follows one id through a sequence of deliveries.
func TestHandlerRedelivery(t *testing.T) {
	tests := []struct {
		name     string
		fail     func(n int) error
		statuses []int // of successive deliveries of one id
		calls    int
	}{
		{name: "duplicate after success", statuses: []int{200, 200, 200}, calls: 1},
		{name: "redelivery after an error", fail: failFirst(1), statuses: []int{500, 200, 200}, calls: 2},
		{name: "errors until the third", fail: failFirst(2), statuses: []int{500, 500, 200, 200}, calls: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &calls{fail: tt.fail}
			h := newHandler(t, c.fn)
			for i, want := range tt.statuses {
				if w := serve(h, request(t, "msg_1", paymentBody)); w.Code != want {
					t.Errorf("delivery %d: status %d, want %d", i+1, w.Code, want)
				}
			}
			if c.count() != tt.calls {
				t.Errorf("function called %d times, want %d", c.count(), tt.calls)
			}
			// Another id is not a duplicate.
			if w := serve(h, request(t, "msg_2", paymentBody)); w.Code != 200 || c.count() != tt.calls+1 {
				t.Errorf("another id: status %d, calls %d", w.Code, c.count())
			}
		})
	}
}

func failFirst(n int) func(int) error {
	return func(i int) error {
		if i <= n {
			return errors.New("database unavailable: password=hunter2")
		}
		return nil
	}
}

// TestHandlerErrorNotShown checks that the function's error is logged but
// not sent to the sender.
func TestHandlerErrorNotShown(t *testing.T) {
	var log bytes.Buffer
	h := newHandler(t, (&calls{fail: failFirst(1)}).fn, webhook.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	w := serve(h, request(t, "msg_1", paymentBody))
	if w.Code != 500 || strings.Contains(w.Body.String(), "hunter2") {
		t.Errorf("status %d, answer %q", w.Code, w.Body)
	}
	if !strings.Contains(log.String(), "hunter2") || !strings.Contains(log.String(), "msg_1") {
		t.Errorf("log %q lacks the error or the id", &log)
	}
}

// TestHandlerPanic checks that a function that panics gives its claim back,
// so the redelivery is processed.
func TestHandlerPanic(t *testing.T) {
	n := 0
	h := newHandler(t, func(context.Context, webhook.Event) error {
		n++
		if n == 1 {
			panic("boom")
		}
		return nil
	})
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed; net/http should see it")
			}
		}()
		serve(h, request(t, "msg_1", paymentBody))
	}()
	if w := serve(h, request(t, "msg_1", paymentBody)); w.Code != 200 || n != 2 {
		t.Errorf("redelivery after a panic: status %d, calls %d, want 200 and 2", w.Code, n)
	}
}

// TestHandlerConcurrentDuplicates sends 20 deliveries of one id at once. The
// function holds the first until the other 19 wait for it, so they really
// overlap.
func TestHandlerConcurrentDuplicates(t *testing.T) {
	const n = 20
	tests := []struct {
		name       string
		failFirst  bool
		calls      int
		ok, failed int
	}{
		{name: "first succeeds", calls: 1, ok: n},
		// A duplicate that waited processes the event itself: it is not
		// answered 2xx before anything succeeded.
		{name: "first fails", failFirst: true, calls: 2, ok: n - 1, failed: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dedup := &webhook.MemoryDedup{}
			release := make(chan struct{})
			var mu sync.Mutex
			calls := 0
			h := newHandler(t, func(context.Context, webhook.Event) error {
				mu.Lock()
				calls++
				first := calls == 1
				mu.Unlock()
				if first {
					<-release
					if tt.failFirst {
						return errors.New("failed")
					}
				}
				return nil
			}, webhook.WithDedup(dedup))

			codes := make(chan int, n)
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() { codes <- serve(h, request(t, "msg_1", paymentBody)).Code })
			}
			// Real time bounds only the wait for the goroutines to start.
			deadline := time.Now().Add(10 * time.Second)
			for webhook.Waiting(dedup) < n-1 {
				if time.Now().After(deadline) {
					close(release)
					wg.Wait()
					t.Fatalf("only %d of %d duplicates waited", webhook.Waiting(dedup), n-1)
				}
				time.Sleep(time.Millisecond)
			}
			close(release)
			wg.Wait()
			close(codes)
			ok, failed := 0, 0
			for c := range codes {
				switch c {
				case 200:
					ok++
				case 500:
					failed++
				default:
					t.Errorf("status %d", c)
				}
			}
			if calls != tt.calls || ok != tt.ok || failed != tt.failed {
				t.Errorf("%d calls, %d×200, %d×500; want %d, %d, %d", calls, ok, failed, tt.calls, tt.ok, tt.failed)
			}
		})
	}
}

// TestHandlerDuplicateGivesUp checks that a duplicate whose sender hangs
// up while it waits is answered 503, and the function is not called for
// it. Every wait is bounded in real time, so that a handler that never
// gives up fails the test within seconds instead of hanging the package.
func TestHandlerDuplicateGivesUp(t *testing.T) {
	dedup := &webhook.MemoryDedup{}
	release := make(chan struct{})
	entered := make(chan struct{})
	enter := sync.OnceFunc(func() { close(entered) })
	c := &calls{}
	h := newHandler(t, func(ctx context.Context, ev webhook.Event) error {
		enter()
		<-release
		return c.fn(ctx, ev)
	}, webhook.WithDedup(dedup))
	first := make(chan int, 1)
	second := make(chan *httptest.ResponseRecorder, 1)
	ctx, cancel := context.WithCancel(context.Background())
	letGo := sync.OnceFunc(func() { cancel(); close(release) })
	var wg sync.WaitGroup
	t.Cleanup(func() {
		// Whatever failed, both deliveries end before the test does.
		letGo()
		ended := make(chan struct{})
		go func() { wg.Wait(); close(ended) }()
		within(t, ended, "both deliveries to end")
	})
	wg.Go(func() { first <- serve(h, request(t, "msg_1", paymentBody)).Code })
	within(t, entered, "the first delivery to reach the function")
	wg.Go(func() { second <- serve(h, request(t, "msg_1", paymentBody).WithContext(ctx)) })
	deadline := time.Now().Add(5 * time.Second)
	for webhook.Waiting(dedup) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the duplicate did not wait for the first delivery within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	w := within(t, second, "the duplicate to give up after its sender hung up")
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Errorf("duplicate gave up with status %d, Retry-After %q; want 503 with one", w.Code, w.Header().Get("Retry-After"))
	}
	letGo()
	if code := within(t, first, "the first delivery to end"); code != 200 || c.count() != 1 {
		t.Errorf("first: status %d, calls %d", code, c.count())
	}
}

// within receives from ch, or fails the test after 5 s of real time
// waiting for what.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("waited 5 s for %s", what)
		var zero T
		return zero
	}
}

// dedupFunc is a Dedup whose answers a test sets.
type dedupFunc struct {
	claim          func() (webhook.ClaimState, error)
	commit, rel    error
	commits, rels  int
	mu             sync.Mutex
	lastID, lastTk string
}

func (d *dedupFunc) Claim(_ context.Context, id string) (webhook.ClaimState, string, error) {
	s, err := d.claim()
	return s, "tok-" + id, err
}

func (d *dedupFunc) Commit(_ context.Context, id, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.commits++
	d.lastID, d.lastTk = id, token
	return d.commit
}

func (d *dedupFunc) Release(_ context.Context, id, token string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rels++
	d.lastID, d.lastTk = id, token
	return d.rel
}

// TestHandlerDedupStore checks the Handler's side of the Dedup contract
// with a store that answers as told.
func TestHandlerDedupStore(t *testing.T) {
	claimed := func() (webhook.ClaimState, error) { return webhook.Claimed, nil }
	tests := []struct {
		name            string
		store           *dedupFunc
		fail            bool
		status          int
		calls           int
		commits, rels   int
		retryAfter, log bool
	}{
		{name: "claimed", store: &dedupFunc{claim: claimed}, status: 200, calls: 1, commits: 1},
		{name: "claimed, function fails", store: &dedupFunc{claim: claimed}, fail: true, status: 500, calls: 1, rels: 1, log: true},
		{name: "processed", store: &dedupFunc{claim: func() (webhook.ClaimState, error) { return webhook.Processed, nil }}, status: 200},
		{name: "in flight elsewhere", store: &dedupFunc{claim: func() (webhook.ClaimState, error) { return webhook.InFlight, nil }}, status: 503, retryAfter: true},
		{name: "store down", store: &dedupFunc{claim: func() (webhook.ClaimState, error) { return 0, errors.New("dial tcp: refused") }}, status: 503, retryAfter: true, log: true},
		{name: "unknown state", store: &dedupFunc{claim: func() (webhook.ClaimState, error) { return 0, nil }}, status: 503, retryAfter: true, log: true},
		// The event was processed: answering 5xx would only repeat it.
		{name: "commit fails", store: &dedupFunc{claim: claimed, commit: errors.New("timeout")}, status: 200, calls: 1, commits: 1, log: true},
		{name: "release fails", store: &dedupFunc{claim: claimed, rel: errors.New("timeout")}, fail: true, status: 500, calls: 1, rels: 1, log: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			c := &calls{}
			if tt.fail {
				c.fail = failFirst(1)
			}
			h := newHandler(t, c.fn, webhook.WithDedup(tt.store), webhook.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
			w := serve(h, request(t, "msg_1", paymentBody))
			if w.Code != tt.status || c.count() != tt.calls || tt.store.commits != tt.commits || tt.store.rels != tt.rels {
				t.Errorf("status %d, %d calls, %d commits, %d releases; want %d, %d, %d, %d",
					w.Code, c.count(), tt.store.commits, tt.store.rels, tt.status, tt.calls, tt.commits, tt.rels)
			}
			if tt.commits+tt.rels > 0 && (tt.store.lastID != "msg_1" || tt.store.lastTk != "tok-msg_1") {
				t.Errorf("finished %q with token %q, want the claim's", tt.store.lastID, tt.store.lastTk)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tt.retryAfter {
				t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
			}
			if got := log.Len() > 0; got != tt.log {
				t.Errorf("logged %q, want a log line: %v", &log, tt.log)
			}
		})
	}
}

// TestNewHandlerErrors checks what NewHandler refuses, and that its errors
// do not repeat the secret.
func TestNewHandlerErrors(t *testing.T) {
	fn := func(context.Context, webhook.Event) error { return nil }
	tests := []struct {
		name   string
		secret string
		fn     func(context.Context, webhook.Event) error
		opts   []webhook.Option
	}{
		{name: "empty secret", secret: "", fn: fn},
		{name: "no prefix", secret: strings.TrimPrefix(secret, "whsec_"), fn: fn},
		{name: "an API key", secret: "sk_live_2KWPBgLlAfxdpx2AI54pPJ85f4W", fn: fn},
		{name: "prefix only", secret: "whsec_", fn: fn},
		{name: "not base64", secret: "whsec_MfKQ9r8GKYqrTwjU-D8ILPZIo2LaLaSw", fn: fn},
		{name: "nil function", secret: secret},
		{name: "bad rotated secret", secret: secret, fn: fn, opts: []webhook.Option{webhook.WithSecrets(otherSecret, "whsec_!!secret!!")}},
		{name: "empty rotated secret", secret: secret, fn: fn, opts: []webhook.Option{webhook.WithSecrets("")}},
		{name: "zero tolerance", secret: secret, fn: fn, opts: []webhook.Option{webhook.WithTolerance(0)}},
		{name: "negative maximum", secret: secret, fn: fn, opts: []webhook.Option{webhook.WithMaxBodyBytes(-1)}},
		{name: "nil dedup", secret: secret, fn: fn, opts: []webhook.Option{webhook.WithDedup(nil)}},
		{name: "nil clock", secret: secret, fn: fn, opts: []webhook.Option{webhook.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := webhook.NewHandler(tt.secret, tt.fn, tt.opts...)
			if err == nil || h != nil {
				t.Fatalf("NewHandler = %v, %v; want an error", h, err)
			}
			for _, s := range []string{"MfKQ9r8GKYqrTwjU", "C2FVsBQIhrscChlQ", "!!secret!!", "2KWPBgLlAfxdpx2AI"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q shows the secret", err)
				}
			}
			t.Log(err)
		})
	}
	if _, err := webhook.NewHandler(secret, fn, nil, webhook.WithSecrets()); err != nil {
		t.Errorf("nil option, no extra secrets: %v", err)
	}
}

// BenchmarkHandler is the cost of one verified delivery of a new event with
// the in-memory dedup: read, verify, parse, claim, call, commit.
func BenchmarkHandler(b *testing.B) {
	h := newHandler(b, func(context.Context, webhook.Event) error { return nil })
	reqs := make([]*http.Request, b.N)
	for i := range reqs {
		reqs[i] = request(b, "msg_"+strconv.Itoa(i), paymentBody)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i])
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
