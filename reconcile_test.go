package spotflowhttp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
	"github.com/spotflow-go/spotflowhttp/webhook"
)

// reconcileFixture is a server, a journal and a fake clock shared by a
// client and the reconcilers under test.
type reconcileFixture struct {
	t     *testing.T
	srv   *spotflowtest.Server
	j     spotflowhttp.Journal
	clock *fakeClock

	mu      sync.Mutex
	settled []spotflowhttp.Settlement
}

func newReconcileFixture(t *testing.T, opts ...spotflowtest.Option) *reconcileFixture {
	f := &reconcileFixture{t: t, srv: spotflowtest.NewServer(opts...), j: spotflowhttp.NewMemoryJournal(), clock: newFakeClock()}
	t.Cleanup(f.srv.Close)
	return f
}

// uncertain sends body to path with one attempt, which must end uncertain,
// and returns the entry it left pending.
func (f *reconcileFixture) uncertain(path, body string) spotflowhttp.Entry {
	f.t.Helper()
	client := &http.Client{Transport: spotflowhttp.NewTransport(f.srv.Client().Transport,
		spotflowhttp.WithJournal(f.j), spotflowhttp.WithMaxAttempts(1), spotflowhttp.WithClock(f.clock))}
	req, _ := http.NewRequestWithContext(spotflowhttp.ContextWithAccount(context.Background(), "m1"),
		http.MethodPost, f.srv.BaseURL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.srv.SecretKey())
	resp, err := client.Do(req)
	var e *spotflowhttp.Error
	if err == nil {
		resp.Body.Close()
		e = spotflowhttp.ErrorOf(resp)
	} else {
		errors.As(err, &e)
	}
	if e == nil || !e.Uncertain {
		f.t.Fatalf("the call ended %v, want uncertain", e)
	}
	es := pendingOf(f.t, f.j)
	for _, en := range es {
		if en.Key == e.IdempotencyKey {
			return en
		}
	}
	f.t.Fatalf("the uncertain call left no entry: %+v", es)
	return spotflowhttp.Entry{}
}

func (f *reconcileFixture) reconciler(opts ...spotflowhttp.Option) *spotflowhttp.Reconciler {
	f.t.Helper()
	opts = append([]spotflowhttp.Option{spotflowhttp.WithClock(f.clock), spotflowhttp.WithJournal(f.j)}, opts...)
	r, err := spotflowhttp.NewReconciler(f.j, f.srv.Client().Transport,
		func(req *http.Request, e spotflowhttp.Entry) error {
			if e.Account != "m1" {
				return fmt.Errorf("unknown account %q", e.Account)
			}
			req.Header.Set("Authorization", "Bearer "+f.srv.SecretKey())
			return nil
		},
		func(s spotflowhttp.Settlement) {
			f.mu.Lock()
			f.settled = append(f.settled, s)
			f.mu.Unlock()
		}, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *reconcileFixture) once(r *spotflowhttp.Reconciler) int {
	f.t.Helper()
	left, err := r.ReconcileOnce(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return left
}

func (f *reconcileFixture) settlements() []spotflowhttp.Settlement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]spotflowhttp.Settlement(nil), f.settled...)
}

// only returns the one settlement reported, failing otherwise.
func (f *reconcileFixture) only() spotflowhttp.Settlement {
	f.t.Helper()
	s := f.settlements()
	if len(s) != 1 {
		f.t.Fatalf("%d settlements reported, want 1: %+v", len(s), s)
	}
	if es := pendingOf(f.t, f.j); len(es) != 0 {
		f.t.Fatalf("the journal still has %+v after the settlement", es)
	}
	return s[0]
}

func payment(ref string) string {
	return `{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"reference":"` + ref + `"}`
}

func faults(fs ...spotflowtest.Fault) spotflowtest.Option {
	return spotflowtest.WithFaults(spotflowtest.Faults{Schedule: fs})
}

// TestReconcileByVerify: a payment created before its connection reset is
// found by the verify endpoint, after the wait for a webhook, and is not
// sent again.
func TestReconcileByVerify(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit))
	e := f.uncertain("/payments", payment("ord-1"))
	r := f.reconciler(spotflowhttp.WithVerifyAfter(5 * time.Second))
	if left := f.once(r); left != 1 || len(f.settlements()) != 0 {
		t.Fatalf("before the wait for a webhook: %d left, %d settled; want 1, 0", left, len(f.settlements()))
	}
	f.clock.Advance(5 * time.Second)
	if left := f.once(r); left != 0 {
		t.Fatalf("%d left after the wait", left)
	}
	s := f.only()
	if s.Outcome != spotflowhttp.OutcomeCreated || s.By != spotflowhttp.SettledByVerify || s.Status != "successful" ||
		s.Entry.Key != e.Key || !strings.Contains(string(s.Resource), `"reference":"ord-1"`) {
		t.Errorf("settlement = %s; want created by verify, successful", desc(s))
	}
	if n := f.srv.Arrivals(e.Key); n != 1 {
		t.Errorf("the create arrived %d times, want 1 (verify must not re-send)", n)
	}
}

// TestReconcileByResend: a create that never committed is not found, so it
// is sent again with its key, and charged once.
func TestReconcileByResend(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	e := f.uncertain("/payments", payment("ord-1"))
	r := f.reconciler(spotflowhttp.WithVerifyAfter(0))
	if left := f.once(r); left != 0 {
		t.Fatalf("%d left", left)
	}
	s := f.only()
	if s.Outcome != spotflowhttp.OutcomeCreated || s.By != spotflowhttp.SettledByResend || s.Status != "successful" {
		t.Errorf("settlement = %s; want created by re-send", desc(s))
	}
	p := f.srv.Payments()
	if len(p) != 1 || p[0].IdempotencyKey != e.Key || f.srv.Charges("ord-1") != 1 {
		t.Errorf("ledger = %+v; want one payment made with the journaled key %s", p, e.Key)
	}
}

// TestReconcileWithoutReference: no reference, so no verify: the re-send
// with the same key is answered with the original payment, replayed.
func TestReconcileWithoutReference(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultServerErrorAfterCommit))
	f.uncertain("/payments", `{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"metadata":{"order_id":"o1"}}`)
	r := f.reconciler(spotflowhttp.WithVerifyAfter(0))
	f.once(r)
	s := f.only()
	if s.Outcome != spotflowhttp.OutcomeCreated || s.By != spotflowhttp.SettledByResend {
		t.Errorf("settlement = %s; want created by re-send", desc(s))
	}
	if n := f.srv.CountMetadata("order_id", "o1"); n != 1 || f.srv.Stats().Replayed != 1 {
		t.Errorf("%d payments for the order, %d replayed; want 1, 1", n, f.srv.Stats().Replayed)
	}
}

// TestReconcileByWebhook: a webhook settles the entry at once, with no
// request to Spotflow; repeated and older deliveries do not change it.
func TestReconcileByWebhook(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit))
	f.uncertain("/payments", payment("ord-1"))
	r := f.reconciler() // the default wait for a webhook, 5 s, has not passed
	before := f.srv.Stats().Requests
	at := time.Now()
	r.Observe("payment_successful", "other", "successful", at, nil)
	r.Observe("transfer_successful", "ord-1", "successful", at, nil) // a transfer sharing the reference
	if left := f.once(r); left != 1 || len(f.settlements()) != 0 {
		t.Fatalf("a transfer's webhook settled a payment: %d left, %d settled", left, len(f.settlements()))
	}
	r.Observe("payment_successful", "ord-1", "successful", at, json.RawMessage(`{"reference":"ord-1","status":"successful"}`))
	r.Observe("payment_successful", "ord-1", "pending", at.Add(-time.Second), json.RawMessage(`{"status":"pending"}`)) // late and older
	if left := f.once(r); left != 0 {
		t.Fatalf("%d left", left)
	}
	s := f.only()
	if s.Outcome != spotflowhttp.OutcomeCreated || s.By != spotflowhttp.SettledByWebhook || s.Status != "successful" {
		t.Errorf("settlement = %s; want created by webhook, successful", desc(s))
	}
	if n := f.srv.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests sent to settle an entry a webhook told of", n)
	}
}

// TestReconcileNotCreated: a transfer refused for good on re-send
// (insufficient_balance) was not created.
func TestReconcileNotCreated(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetBeforeCommit), spotflowtest.WithBalance(100))
	f.uncertain("/transfers", `{"amount":5000,"currency":"NGN","reference":"trf-1"}`)
	r := f.reconciler(spotflowhttp.WithVerifyAfter(0))
	f.once(r)
	s := f.only()
	var e *spotflowhttp.Error
	if s.Outcome != spotflowhttp.OutcomeNotCreated || s.By != spotflowhttp.SettledByResend ||
		!errors.As(s.Err, &e) || e.Code != "insufficient_balance" {
		t.Errorf("settlement = %s; want not created by re-send, insufficient_balance", desc(s))
	}
	if n := len(f.srv.Transfers()); n != 0 {
		t.Errorf("%d transfers in the ledger", n)
	}
}

// TestReconcileAfterWindow: once Spotflow's idempotency window has closed,
// a re-send could charge twice: the entry goes to a human instead.
func TestReconcileAfterWindow(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	e := f.uncertain("/payments", payment("ord-1"))
	f.clock.Advance(spotflowhttp.IdempotencyWindow)
	r := f.reconciler(spotflowhttp.WithVerifyAfter(0))
	f.once(r)
	s := f.only()
	if s.Outcome != spotflowhttp.OutcomeNeedsHuman || s.By != spotflowhttp.SettledByExpiry || s.Err == nil {
		t.Errorf("settlement = %s; want needs a human, by expiry", desc(s))
	}
	if n := f.srv.Arrivals(e.Key); n != 1 {
		t.Errorf("the create arrived %d times; want 1: no re-send after the window", n)
	}
}

// TestReconcileAuthorizeFails: no credential, no request: the entry stays.
func TestReconcileAuthorizeFails(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	client := &http.Client{Transport: spotflowhttp.NewTransport(f.srv.Client().Transport,
		spotflowhttp.WithJournal(f.j), spotflowhttp.WithMaxAttempts(1), spotflowhttp.WithClock(f.clock))}
	req, _ := http.NewRequest(http.MethodPost, f.srv.BaseURL()+"/payments", strings.NewReader(payment("ord-1")))
	req.Header.Set("Authorization", "Bearer "+f.srv.SecretKey())
	if _, err := client.Do(req); err == nil { // no account: the authorize function refuses it
		t.Fatal("want a reset")
	}
	r := f.reconciler(spotflowhttp.WithVerifyAfter(0))
	before := f.srv.Stats().Requests
	if left := f.once(r); left != 1 || len(f.settlements()) != 0 {
		t.Fatalf("%d left, %d settled; want 1, 0", left, len(f.settlements()))
	}
	if n := f.srv.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests sent without a credential", n)
	}
}

// TestReconcilersSettleEachOnce: three reconcilers on one journal, one of
// them from two goroutines, racing over 30 entries, report each exactly
// once.
func TestReconcilersSettleEachOnce(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit))
	const n = 30
	for i := range n {
		f.uncertain("/payments", payment(fmt.Sprintf("ord-%d", i)))
	}
	a := f.reconciler(spotflowhttp.WithVerifyAfter(0))
	rs := []*spotflowhttp.Reconciler{
		a, a, // one Reconciler used from two goroutines, as Run and ReconcileOnce might be
		f.reconciler(spotflowhttp.WithVerifyAfter(0)),
		f.reconciler(spotflowhttp.WithVerifyAfter(0)),
	}
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if left, _ := r.ReconcileOnce(context.Background()); left == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for _, s := range f.settlements() {
		seen[s.Entry.Reference]++
		if s.Outcome != spotflowhttp.OutcomeCreated {
			t.Errorf("%s: %v", s.Entry.Reference, s.Outcome)
		}
	}
	for i := range n {
		if ref := fmt.Sprintf("ord-%d", i); seen[ref] != 1 {
			t.Errorf("%s reported %d times, want 1", ref, seen[ref])
		}
	}
}

// TestReconcilerRunStopsAndWakes: Run settles an entry as soon as a webhook
// is observed (its interval is an hour), and returns when its context ends.
func TestReconcilerRunStopsAndWakes(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit))
	f.uncertain("/payments", payment("ord-1"))
	r := f.reconciler(spotflowhttp.WithReconcileInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	r.Observe("payment_successful", "ord-1", "successful", time.Now(), nil)
	deadline := time.Now().Add(10 * time.Second)
	for len(f.settlements()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if s := f.only(); s.By != spotflowhttp.SettledByWebhook {
		t.Errorf("settled by %v, want webhook", s.By)
	}
}

func TestNewReconcilerNeedsItsFunctions(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	auth := func(*http.Request, spotflowhttp.Entry) error { return nil }
	report := func(spotflowhttp.Settlement) {}
	for _, tc := range []struct {
		j      spotflowhttp.Journal
		auth   func(*http.Request, spotflowhttp.Entry) error
		report func(spotflowhttp.Settlement)
	}{{nil, auth, report}, {j, nil, report}, {j, auth, nil}} {
		if _, err := spotflowhttp.NewReconciler(tc.j, nil, tc.auth, tc.report); err == nil {
			t.Error("NewReconciler accepted a nil argument")
		}
	}
}

// desc is a settlement in a line, for failure messages.
func desc(s spotflowhttp.Settlement) string {
	return fmt.Sprintf("%s by %s (key %s, reference %q, status %q, err %v)", s.Outcome, s.By, s.Entry.Key, s.Entry.Reference, s.Status, s.Err)
}

// TestReconcileBySignedWebhook: the simulator's signed webhook, verified by
// the webhook package's Handler, settles the entry of a payment whose
// connection reset after commit, without the reconciler asking Spotflow
// anything; duplicate deliveries and a forged one change nothing.
func TestReconcileBySignedWebhook(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit),
		spotflowtest.WithWebhooks(spotflowtest.Webhooks{Duplicates: 1, BadSignature: 0.3}))
	var rec *spotflowhttp.Reconciler
	hooks, err := webhook.NewHandler(f.srv.WebhookSecret(), func(_ context.Context, ev webhook.Event) error {
		rec.Observe(ev.Type, ev.Reference, ev.Status, ev.Timestamp, ev.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	receiver := httptest.NewServer(hooks)
	defer receiver.Close()
	rec = f.reconciler(spotflowhttp.WithVerifyAfter(time.Hour)) // only a webhook can settle it in time
	f.srv.SetWebhookURL(receiver.URL)

	f.uncertain("/payments", payment("ord-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.WaitWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	before := f.srv.Stats().Requests
	if left := f.once(rec); left != 0 {
		t.Fatalf("%d left after the webhook", left)
	}
	s := f.only()
	if s.Outcome != spotflowhttp.OutcomeCreated || s.By != spotflowhttp.SettledByWebhook || s.Status != "successful" ||
		!strings.Contains(string(s.Resource), `"reference":"ord-1"`) {
		t.Errorf("settlement = %s; want created by webhook, successful", desc(s))
	}
	if n := f.srv.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests to Spotflow to settle what a webhook told", n)
	}
}

// TestReconcileBodyMissing: a body that cannot be read again (no GetBody)
// is not kept, so the entry has neither a reference to verify nor a body to
// re-send: only a human can settle it, and the reconciler says so at once.
func TestReconcileBodyMissing(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetAfterCommit))
	client := &http.Client{Transport: spotflowhttp.NewTransport(f.srv.Client().Transport,
		spotflowhttp.WithJournal(f.j), spotflowhttp.WithClock(f.clock))}
	req, _ := http.NewRequestWithContext(spotflowhttp.ContextWithAccount(context.Background(), "m1"),
		http.MethodPost, f.srv.BaseURL()+"/payments", io.NopCloser(strings.NewReader(payment("ord-1"))))
	req.Header.Set("Authorization", "Bearer "+f.srv.SecretKey())
	if _, err := client.Do(req); err == nil {
		t.Fatal("want the reset")
	}
	es := pendingOf(t, f.j)
	if len(es) != 1 || !es[0].BodyMissing || es[0].Body != nil || es[0].Reference != "" {
		t.Fatalf("pending = %+v; want one entry without body or reference", es)
	}
	f.once(f.reconciler(spotflowhttp.WithVerifyAfter(0)))
	if s := f.only(); s.Outcome != spotflowhttp.OutcomeNeedsHuman || s.Err == nil {
		t.Errorf("settlement = %s; want needs a human, with the reason", desc(s))
	}
}

// TestReconcileCredentialRefused: a 401 on the reconciler's own request
// says nothing of the payment, which stays pending; with WithHaltOnEscalate
// among the options the reconciler sends nothing more; a reconciler with a
// working credential then settles it.
func TestReconcileCredentialRefused(t *testing.T) {
	f := newReconcileFixture(t, faults(spotflowtest.FaultResetBeforeCommit))
	f.uncertain("/payments", payment("ord-1"))
	var reported []spotflowhttp.Settlement
	revoked := func(opts ...spotflowhttp.Option) *spotflowhttp.Reconciler {
		rec, err := spotflowhttp.NewReconciler(f.j, f.srv.Client().Transport,
			func(req *http.Request, _ spotflowhttp.Entry) error {
				req.Header.Set("Authorization", "Bearer sk_test_revoked")
				return nil
			},
			func(s spotflowhttp.Settlement) { reported = append(reported, s) },
			append(opts, spotflowhttp.WithClock(f.clock), spotflowhttp.WithVerifyAfter(0))...)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	before := f.srv.Stats().Requests
	if left := f.once(revoked()); left != 1 || len(reported) != 0 {
		t.Fatalf("after a 401: %d left, %d reported; want the entry pending", left, len(reported))
	}
	if n := f.srv.Stats().Unauthorized; n != 2 || f.srv.Stats().Requests-before != 2 {
		t.Fatalf("%d 401s for %d requests; want the verify and the re-send refused", n, f.srv.Stats().Requests-before)
	}
	f.clock.Advance(time.Minute)
	rec := revoked(spotflowhttp.WithHaltOnEscalate())
	f.once(rec) // 401, halted
	before = f.srv.Stats().Requests
	if left := f.once(rec); left != 1 || len(reported) != 0 {
		t.Fatalf("halted: %d left, %d reported; want the entry pending", left, len(reported))
	}
	if n := f.srv.Stats().Requests - before; n != 0 {
		t.Errorf("%d requests sent through a halted transport", n)
	}
	f.clock.Advance(time.Minute)
	f.once(f.reconciler(spotflowhttp.WithVerifyAfter(0)))
	if s := f.only(); s.Outcome != spotflowhttp.OutcomeCreated || s.By != spotflowhttp.SettledByResend {
		t.Errorf("with a working credential: %s; want created by re-send", desc(s))
	}
}

// resendFixture is a journal holding one free entry of a payment create
// and a Reconciler over an in-memory Spotflow whose verify finds nothing
// and whose answers to the re-sends are given in order (the last repeats).
type resendFixture struct {
	j       *spotflowhttp.MemoryJournal
	rec     *spotflowhttp.Reconciler
	entry   spotflowhttp.Entry
	mu      sync.Mutex
	resends int
	settled []spotflowhttp.Settlement
}

func newResendFixture(t *testing.T, answers ...func(n int) *http.Response) *resendFixture {
	t.Helper()
	clock := newFakeClock()
	f := &resendFixture{j: spotflowhttp.NewMemoryJournal()}
	f.entry = spotflowhttp.Entry{
		Key:       "key-1",
		Reference: "ord-1",
		Method:    http.MethodPost,
		URL:       "https://api.spotflow.co/api/v1/payments",
		Header:    http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"key-1"}},
		Body:      []byte(payment("ord-1")),
		Time:      clock.Now(),
	}
	if err := f.j.Record(context.Background(), f.entry); err != nil {
		t.Fatal(err)
	}
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		var resp *http.Response
		if r.Method == http.MethodGet {
			resp = answer(404, `{"code":"not_found","message":"Payment not found"}`)
		} else {
			f.mu.Lock()
			f.resends++
			n := f.resends
			f.mu.Unlock()
			resp = answers[min(n, len(answers))-1](n)
		}
		resp.Request = r
		return resp, nil
	})
	rec, err := spotflowhttp.NewReconciler(f.j, base,
		func(req *http.Request, _ spotflowhttp.Entry) error {
			req.Header.Set("Authorization", "Bearer sk_test_reconciler")
			return nil
		},
		func(s spotflowhttp.Settlement) {
			f.mu.Lock()
			f.settled = append(f.settled, s)
			f.mu.Unlock()
		}, spotflowhttp.WithClock(clock), spotflowhttp.WithVerifyAfter(0))
	if err != nil {
		t.Fatal(err)
	}
	f.rec = rec
	return f
}

func (f *resendFixture) sent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resends
}

func (f *resendFixture) settlements() []spotflowhttp.Settlement {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]spotflowhttp.Settlement(nil), f.settled...)
}

// A 409 or 422 to the re-send says the key is bound to another request:
// whether the journaled create took effect is unknown, and a person must
// look. Reporting it as not created would invite a second charge.
func TestReconcileResendConflictNeedsHuman(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
	}{
		{http.StatusConflict, `{"code":"idempotency_key_in_use","message":"The key is in use by another request"}`},
		{http.StatusUnprocessableEntity, `{"code":"idempotency_key_reused","message":"The key was used with another request"}`},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			f := newResendFixture(t, always(tc.status, tc.body))
			if left, err := f.rec.ReconcileOnce(context.Background()); err != nil || left != 0 {
				t.Fatalf("ReconcileOnce: %d left, %v; want the entry settled", left, err)
			}
			s := f.settlements()
			if len(s) != 1 {
				t.Fatalf("%d settlements, want 1", len(s))
			}
			var e *spotflowhttp.Error
			if s[0].Outcome != spotflowhttp.OutcomeNeedsHuman || s[0].By != spotflowhttp.SettledByResend ||
				!errors.As(s[0].Err, &e) || e.StatusCode != tc.status {
				t.Errorf("settlement = %s; want needs_human by resend, with the %d", desc(s[0]), tc.status)
			}
		})
	}
}

// A re-send whose first attempt may have been processed (a 503, or a
// connection cut after the request left) and whose retry then gets a final
// 4xx says nothing certain of the create: the first attempt may have
// created it. The entry stays pending, to be verified or re-sent later,
// instead of being settled as not created.
func TestReconcileResendUncertainThenFinal4xxStaysPending(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(int) *http.Response
	}{
		{"503", always(503, `<html>503 Service Unavailable</html>`)},
		{"500 server_error", always(500, `{"code":"server_error","message":"Internal server error"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newResendFixture(t, tc.first, always(400, `{"error":"Bad Request","message":"missing_parameter","status":400}`))
			left, err := f.rec.ReconcileOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n := f.sent(); n != 2 {
				t.Fatalf("the re-send was sent %d times, want 2: once, and again after the %s", n, tc.name)
			}
			if s := f.settlements(); left != 1 || len(s) != 0 {
				for _, s := range s {
					t.Errorf("settled as %s", desc(s))
				}
				t.Fatalf("%d left, %d settled; want the entry pending", left, len(s))
			}
			if es := pendingOf(t, f.j); len(es) != 1 || es[0].Key != f.entry.Key {
				t.Errorf("pending = %+v, want the entry", es)
			}
		})
	}
}
