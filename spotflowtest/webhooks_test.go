package spotflowtest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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

	"go.uber.org/goleak"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// hook is one webhook as the receiver got it.
type hook struct {
	id, timestamp, signature string
	spotflowSignature        string
	body                     []byte
	at                       time.Time
	Event                    string
	Data                     struct {
		ID, Reference, Status, Currency string
		Amount                          int64
	}
}

// receiver is a webhook endpoint that records what it gets and answers
// with what answer says (204 when answer is nil).
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	hooks    []hook
	tries    map[string]int // webhook-id → requests so far
	inFlight int
	maxIn    int
	answer   func(h hook, try int) int // try counts from 1 per webhook-id
}

func newReceiver(t *testing.T, answer func(h hook, try int) int) *receiver {
	rc := &receiver{t: t, tries: map[string]int{}, answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := hook{
		id:        r.Header.Get("webhook-id"),
		timestamp: r.Header.Get("webhook-timestamp"),
		signature: r.Header.Get("webhook-signature"),
		body:      body,
		at:        time.Now(),
	}
	h.spotflowSignature = r.Header.Get("x-spotflow-signature")
	if err := json.Unmarshal(body, &h); err != nil || r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" {
		rc.t.Errorf("webhook %s %q: %v, Content-Type %q", r.Method, body, err, r.Header.Get("Content-Type"))
	}
	rc.mu.Lock()
	rc.hooks = append(rc.hooks, h)
	rc.tries[h.id]++
	try := rc.tries[h.id]
	rc.inFlight++
	rc.maxIn = max(rc.maxIn, rc.inFlight)
	answer := rc.answer
	rc.mu.Unlock()
	status := http.StatusNoContent
	if answer != nil {
		status = answer(h, try)
	}
	rc.mu.Lock()
	rc.inFlight--
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) triesOf(id string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.tries[id]
}

func (rc *receiver) got() []hook {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hook(nil), rc.hooks...)
}

// waitFor polls, for up to 10 s of real time, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitWebhooks(t *testing.T, s *spotflowtest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitWebhooks(ctx); err != nil {
		t.Fatalf("WaitWebhooks: %v", err)
	}
}

// expectedSignature computes the Standard Webhooks signature from the
// specification, independently of the package; "" for a malformed secret.
func expectedSignature(secret, id, timestamp string, body []byte) string {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return ""
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "." + string(body)))
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestWebhookSignature(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL}))
	secret := h.s.WebhookSecret()
	if key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_")); err != nil || len(key) != 24 {
		t.Fatalf("WebhookSecret() = %q", secret)
	}
	pay := h.do("POST", "/payments", paymentBody("pay-1", 5000, "o-1"))
	trf := h.do("POST", "/transfers", transferBody("trf-1", 700))
	if pay.status != 201 || trf.status != 201 {
		t.Fatal(pay, trf)
	}
	waitWebhooks(t, h.s)

	hooks := rc.got()
	if len(hooks) != 2 {
		t.Fatalf("%d webhooks, want 2", len(hooks))
	}
	byRef := checkSignedHooks(t, secret, hooks)
	checkSuccessEvents(t, h, byRef["pay-1"], byRef["trf-1"])
	checkDeliveredOnce(t, h.s, byRef)
	// A replayed create and a refused duplicate are not events.
	h.do("POST", "/payments", paymentBody("pay-1", 5000, "o-1"))
	waitWebhooks(t, h.s)
	if n := len(rc.got()); n != 2 {
		t.Errorf("%d webhooks after a refused duplicate, want 2", n)
	}
}

// checkSignedHooks checks that each of hooks is signed with secret, stamped
// now and has a msg_ id, and returns them by reference.
func checkSignedHooks(t *testing.T, secret string, hooks []hook) map[string]hook {
	byRef := map[string]hook{}
	for _, hk := range hooks {
		if want := expectedSignature(secret, hk.id, hk.timestamp, hk.body); hk.signature != want {
			t.Errorf("%s: signature %q, want %q", hk.Data.Reference, hk.signature, want)
		}
		ts, err := strconv.ParseInt(hk.timestamp, 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("webhook-timestamp %q is not now", hk.timestamp)
		}
		if !strings.HasPrefix(hk.id, "msg_") {
			t.Errorf("webhook-id %q", hk.id)
		}
		byRef[hk.Data.Reference] = hk
	}
	return byRef
}

// checkSuccessEvents checks the events of TestWebhookSignature's payment
// p (pay-1, 5000 NGN) and transfer tr (trf-1, 700) against h's ledger.
func checkSuccessEvents(t *testing.T, h *harness, p, tr hook) {
	ledger := h.s.Payments()[0]
	if p.Event != "payment_successful" || p.Data.Status != "successful" || p.Data.Amount != 5000 || p.Data.Currency != "NGN" || p.Data.ID != ledger.ID {
		t.Errorf("payment webhook: %s", p.body)
	}
	if tr.Event != "transfer_successful" || tr.Data.Status != "successful" || tr.Data.Amount != 700 || tr.Data.ID != h.s.Transfers()[0].ID {
		t.Errorf("transfer webhook: %s", tr.body)
	}
	// The data is the object verify shows.
	if v := h.do("GET", "/payments/verify?reference=pay-1", ""); !strings.Contains(string(p.body), `"data":`+v.body+`}`) {
		t.Errorf("data %s is not verify's %s", p.body, v.body)
	}
}

// checkDeliveredOnce checks that s made two deliveries, each of the hook
// in byRef for its reference, at the first attempt and accepted.
func checkDeliveredOnce(t *testing.T, s *spotflowtest.Server, byRef map[string]hook) {
	ds := s.Deliveries()
	if len(ds) != 2 {
		t.Fatalf("deliveries: %+v", ds)
	}
	for _, d := range ds {
		if d.Attempt != 1 || d.Copy != 0 || d.StatusCode != 204 || d.Err != nil || !d.Delivered() || d.BadSignature || d.ID != byRef[d.Reference].id {
			t.Errorf("delivery %+v", d)
		}
	}
}

func TestWebhookSecretOption(t *testing.T) {
	const mine = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	rc := newReceiver(t, nil)
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, Secret: mine}))
	if got := h.s.WebhookSecret(); got != mine {
		t.Fatalf("WebhookSecret() = %q", got)
	}
	h.do("POST", "/payments", paymentBody("p", 1, "o"))
	waitWebhooks(t, h.s)
	hk := rc.got()[0]
	if hk.signature != expectedSignature(mine, hk.id, hk.timestamp, hk.body) {
		t.Error("not signed with the given secret")
	}
	// The signature under the other name Spotflow's docs give it.
	rcx := newReceiver(t, nil)
	hx := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rcx.srv.URL, SignatureHeader: spotflowtest.HeaderSpotflowSignature}))
	hx.do("POST", "/payments", paymentBody("p", 1, "o"))
	waitWebhooks(t, hx.s)
	if r := rcx.got()[0]; r.signature != "" || r.spotflowSignature != expectedSignature(hx.s.WebhookSecret(), r.id, r.timestamp, r.body) {
		t.Errorf("x-spotflow-signature %q, webhook-signature %q", r.spotflowSignature, r.signature)
	}

	for _, w := range []spotflowtest.Webhooks{{Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, {Secret: "whsec_not base64!"}, {MaxAttempts: -1}, {Duplicates: 1.5}} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "WithWebhooks") {
					t.Errorf("%+v: recovered %v, want a panic naming WithWebhooks", w, r)
				}
			}()
			spotflowtest.NewServer(spotflowtest.WithWebhooks(w)).Close()
		}()
	}
	if s := spotflowtest.NewServer(); s.WebhookSecret() != "" || s.Deliveries() != nil {
		t.Error("a server without webhooks has a secret or deliveries")
		s.Close()
	} else {
		s.Close()
	}
}

func TestWebhookDuplicates(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, Duplicates: 1, Backoff: 10 * time.Millisecond}))
	for i := range 5 {
		h.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o"))
	}
	waitWebhooks(t, h.s)
	if n := len(rc.got()); n != 10 {
		t.Fatalf("%d webhooks, want 10", n)
	}
	for _, hk := range rc.got() {
		if n := rc.triesOf(hk.id); n != 2 {
			t.Errorf("%s arrived %d times, want 2", hk.id, n)
		}
	}
	copies := map[string][]int{}
	for _, d := range h.s.Deliveries() {
		copies[d.ID] = append(copies[d.ID], d.Copy)
	}
	for id, c := range copies {
		if len(c) != 2 || c[0]+c[1] != 1 {
			t.Errorf("%s: copies %v, want 0 and 1", id, c)
		}
	}

	// A share: about half the events, the same ones under the same seed.
	dups := func() map[string]bool {
		rc := newReceiver(t, nil)
		h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, Duplicates: 0.5, Backoff: time.Millisecond}))
		for i := range 40 {
			h.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o"))
		}
		waitWebhooks(t, h.s)
		out := map[string]bool{}
		for _, hk := range rc.got() {
			out[hk.Data.Reference] = rc.triesOf(hk.id) == 2
		}
		return out
	}
	a, b := dups(), dups()
	n := 0
	for ref, dup := range a {
		if dup {
			n++
		}
		if b[ref] != dup {
			t.Errorf("%s: duplicated %v then %v under one seed", ref, dup, b[ref])
		}
	}
	if n < 10 || n > 30 {
		t.Errorf("%d of 40 events duplicated, want about 20", n)
	}
}

// inversions counts the pairs of webhooks that arrived in the opposite
// order of their events.
func inversions(hooks []hook, order map[string]int) int {
	n := 0
	for i := range hooks {
		for j := i + 1; j < len(hooks); j++ {
			if order[hooks[i].Data.Reference] > order[hooks[j].Data.Reference] {
				n++
			}
		}
	}
	return n
}

func TestWebhookOutOfOrder(t *testing.T) {
	run := func(w spotflowtest.Webhooks) int {
		rc := newReceiver(t, nil)
		w.URL = rc.srv.URL
		w.Concurrency = 1 // so that only the option can reorder
		h := newHarness(t, spotflowtest.WithWebhooks(w))
		order := map[string]int{}
		for i := range 20 {
			ref := fmt.Sprint("p-", i)
			order[ref] = i
			h.do("POST", "/payments", paymentBody(ref, 1, "o"))
		}
		waitWebhooks(t, h.s)
		hooks := rc.got()
		if len(hooks) != 20 {
			t.Fatalf("%d webhooks, want 20", len(hooks))
		}
		return inversions(hooks, order)
	}
	if n := run(spotflowtest.Webhooks{}); n != 0 {
		t.Errorf("in order: %d inversions, want 0", n)
	}
	if n := run(spotflowtest.Webhooks{OutOfOrder: 1, HoldBack: 500 * time.Millisecond}); n < 20 {
		t.Errorf("out of order: %d inversions of 190 pairs, want many", n)
	}
	// With room for one scheduled delivery, a held event holds up the
	// later ones: the queue bound is real.
	if n := run(spotflowtest.Webhooks{OutOfOrder: 1, HoldBack: 20 * time.Millisecond, QueueSize: 1}); n != 0 {
		t.Errorf("queue of 1: %d inversions, want 0", n)
	}
}

func TestWebhookRedeliveryAfterServerError(t *testing.T) {
	rc := newReceiver(t, func(_ hook, try int) int {
		if try <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	const backoff = 20 * time.Millisecond
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, Backoff: backoff}))
	for i := range 3 {
		h.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o"))
	}
	waitWebhooks(t, h.s)

	byID := map[string][]spotflowtest.Delivery{}
	for _, d := range h.s.Deliveries() {
		byID[d.ID] = append(byID[d.ID], d)
	}
	if len(byID) != 3 {
		t.Fatalf("%d events delivered, want 3", len(byID))
	}
	for id, ds := range byID {
		if len(ds) != 3 || ds[0].StatusCode != 500 || ds[1].StatusCode != 500 || ds[2].StatusCode != 200 ||
			ds[0].Attempt != 1 || ds[1].Attempt != 2 || ds[2].Attempt != 3 || !ds[2].Delivered() || ds[1].Delivered() {
			t.Errorf("%s: %+v", id, ds)
		}
	}
	// The tries back off: at least Backoff, then twice that, apart.
	at := map[string][]time.Time{}
	for _, hk := range rc.got() {
		at[hk.id] = append(at[hk.id], hk.at)
	}
	for id, ts := range at {
		if len(ts) != 3 {
			continue // reported above
		}
		if g1, g2 := ts[1].Sub(ts[0]), ts[2].Sub(ts[1]); g1 < backoff || g2 < 2*backoff {
			t.Errorf("%s: tries %v then %v apart, want at least %v and %v", id, g1, g2, backoff, 2*backoff)
		}
	}
}

func TestWebhookDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	rc := newReceiver(t, nil)
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, Delay: delay}))
	before := time.Now()
	h.do("POST", "/payments", paymentBody("p", 1, "o"))
	waitWebhooks(t, h.s)
	got := rc.got()
	if len(got) != 1 {
		t.Fatalf("%d webhooks, want 1", len(got))
	}
	if after := got[0].at.Sub(before); after < delay {
		t.Errorf("the webhook came %v after the payment, want at least %v", after, delay)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	rc := newReceiver(t, func(hook, int) int { return http.StatusServiceUnavailable })
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, MaxAttempts: 3, Backoff: time.Millisecond}))
	h.do("POST", "/payments", paymentBody("p", 1, "o"))
	waitWebhooks(t, h.s)
	ds := h.s.Deliveries()
	if len(ds) != 3 || ds[2].Attempt != 3 || ds[2].StatusCode != 503 {
		t.Errorf("deliveries: %+v", ds)
	}
}

// A receiver that is down gets the webhook once it is back: connection
// errors are tried again like a 5xx.
func TestWebhookRedeliveryAfterConnectionError(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	rc := newReceiver(t, nil)
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: down.URL, MaxAttempts: 50, Backoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}))
	h.do("POST", "/payments", paymentBody("p", 1, "o"))
	waitFor(t, "a failed try", func() bool { return len(h.s.Deliveries()) > 0 })
	h.s.SetWebhookURL(rc.srv.URL)
	waitWebhooks(t, h.s)

	ds := h.s.Deliveries()
	last := ds[len(ds)-1]
	if ds[0].Err == nil || ds[0].StatusCode != 0 || !last.Delivered() || last.Attempt != len(ds) || len(rc.got()) != 1 {
		t.Errorf("deliveries: first %+v, last %+v of %d; received %d", ds[0], last, len(ds), len(rc.got()))
	}
}

// Until a URL is set, events wait; then they all go.
func TestWebhookURLSetLater(t *testing.T) {
	rc := newReceiver(t, nil)
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{}))
	for i := range 10 {
		h.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.s.WaitWebhooks(ctx); !errors.Is(err, context.DeadlineExceeded) || len(h.s.Deliveries()) != 0 {
		t.Fatalf("without a URL: WaitWebhooks %v, %d deliveries", err, len(h.s.Deliveries()))
	}
	h.s.SetWebhookURL(rc.srv.URL)
	waitWebhooks(t, h.s)
	if n := len(rc.got()); n != 10 {
		t.Errorf("%d webhooks, want 10", n)
	}
}

func TestWebhookBadSignature(t *testing.T) {
	var secret string
	var mu sync.Mutex
	rc := newReceiver(t, func(hk hook, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if hk.signature != expectedSignature(secret, hk.id, hk.timestamp, hk.body) {
			return http.StatusUnauthorized
		}
		return http.StatusNoContent
	})
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, BadSignature: 0.4, Backoff: time.Millisecond, MaxAttempts: 20}))
	mu.Lock()
	secret = h.s.WebhookSecret()
	mu.Unlock()
	for i := range 20 {
		h.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o"))
	}
	waitWebhooks(t, h.s)

	bad, delivered := 0, map[string]bool{}
	for _, d := range h.s.Deliveries() {
		// The receiver's own check agrees with the fault, try by try.
		if d.BadSignature != (d.StatusCode == 401) {
			t.Errorf("try %+v: bad signature %v, receiver answered %d", d, d.BadSignature, d.StatusCode)
		}
		if d.BadSignature {
			bad++
		}
		if d.Delivered() {
			delivered[d.ID] = true
		}
	}
	if bad < 4 || len(delivered) != 20 {
		t.Errorf("%d bad signatures; %d of 20 events delivered in the end", bad, len(delivered))
	}

	// Every try forged: the receiver never accepts, the tries run out.
	rc2 := newReceiver(t, func(hook, int) int { return http.StatusUnauthorized })
	h2 := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc2.srv.URL, BadSignature: 1, MaxAttempts: 4, Backoff: time.Millisecond}))
	h2.do("POST", "/payments", paymentBody("p", 1, "o"))
	waitWebhooks(t, h2.s)
	for _, hk := range rc2.got() {
		if hk.signature == expectedSignature(h2.s.WebhookSecret(), hk.id, hk.timestamp, hk.body) {
			t.Error("BadSignature 1 sent a valid signature")
		}
	}
	if n := len(rc2.got()); n != 4 {
		t.Errorf("%d tries, want 4", n)
	}
}

// A checkout's webhook leaves when its customer finishes, on a fake clock
// and on the real one, without anyone asking.
func TestWebhookAfterCheckout(t *testing.T) {
	t.Run("fake clock", func(t *testing.T) {
		rc := newReceiver(t, nil)
		clock := newFakeClock()
		h := newHarness(t, spotflowtest.WithClock(clock.Now),
			spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Minute, FailureRate: 0.5}),
			spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL}))
		for i := range 8 {
			if r := h.do("POST", "/payments/initialize", checkoutBody(fmt.Sprint("c-", i))); r.status != 200 {
				t.Fatal(r)
			}
		}
		// Real time passes, the server's clock does not: nothing to say.
		time.Sleep(50 * time.Millisecond)
		waitWebhooks(t, h.s)
		if n := len(rc.got()); n != 0 {
			t.Fatalf("%d webhooks while the checkouts are pending", n)
		}
		clock.Advance(time.Minute)
		waitFor(t, "8 webhooks", func() bool { return len(rc.got()) == 8 })
		failed := 0
		for _, hk := range rc.got() {
			want := map[string]string{"successful": "payment_successful", "failed": "payment_failed"}[hk.Data.Status]
			if hk.Event != want {
				t.Errorf("%s: event %q with status %q", hk.Data.Reference, hk.Event, hk.Data.Status)
			}
			if got := h.verifyStatus(hk.Data.Reference); got != hk.Data.Status {
				t.Errorf("%s: webhook says %q, verify %q", hk.Data.Reference, hk.Data.Status, got)
			}
			if hk.Data.Status == "failed" {
				failed++
			}
		}
		if failed == 0 || failed == 8 {
			t.Errorf("%d of 8 failed with FailureRate 0.5", failed)
		}
	})
	t.Run("real clock", func(t *testing.T) {
		rc := newReceiver(t, nil)
		h := newHarness(t, spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: 30 * time.Millisecond}),
			spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL}))
		h.do("POST", "/payments/initialize", checkoutBody("c"))
		waitFor(t, "the webhook", func() bool { return len(rc.got()) == 1 })
		if hk := rc.got()[0]; hk.Event != "payment_successful" || hk.Data.Reference != "c" {
			t.Errorf("webhook %s", hk.body)
		}
	})
	t.Run("completed by hand", func(t *testing.T) {
		rc := newReceiver(t, nil)
		h := newHarness(t, spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}),
			spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL}))
		h.do("POST", "/payments/initialize", checkoutBody("c"))
		if err := h.s.CompleteCheckout("c", false); err != nil {
			t.Fatal(err)
		}
		waitWebhooks(t, h.s)
		if hks := rc.got(); len(hks) != 1 || hks[0].Event != "payment_failed" {
			t.Errorf("webhooks: %d", len(hks))
		}
	})
}

func TestWebhookConcurrency(t *testing.T) {
	rc := newReceiver(t, func(hook, int) int { time.Sleep(10 * time.Millisecond); return 204 })
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rc.srv.URL, Concurrency: 3}))
	for i := range 30 {
		h.do("POST", "/payments", paymentBody(fmt.Sprint("p-", i), 1, "o"))
	}
	waitWebhooks(t, h.s)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.hooks) != 30 || rc.maxIn > 3 {
		t.Errorf("%d webhooks, at most %d at once; want 30, at most 3", len(rc.hooks), rc.maxIn)
	}
}

// Close stops every delivery, the hanging ones too, and leaves no goroutine
// behind.
func TestWebhookCloseStopsEverything(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	hanging := make(chan struct{}, 100)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices the client going away only once the body
		// is read.
		_, _ = io.Copy(io.Discard, r.Body)
		hanging <- struct{}{}
		<-r.Context().Done()
	}))
	s := spotflowtest.NewServer(
		spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}),
		spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rcv.URL, Timeout: time.Hour, MaxAttempts: 100, Concurrency: 4}))
	client := &http.Client{Transport: &http.Transport{}}
	for i := range 10 {
		for _, path := range []string{"/payments", "/payments/initialize"} {
			req, _ := http.NewRequest("POST", s.BaseURL()+path, strings.NewReader(checkoutBody(fmt.Sprint(path, i))))
			req.Header.Set("Authorization", "Bearer "+s.SecretKey())
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	for range 4 {
		<-hanging
	}
	waiting := make(chan error, 1)
	go func() { waiting <- s.WaitWebhooks(context.Background()) }()

	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: a delivery was not cancelled")
	}
	if err := <-waiting; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("WaitWebhooks during Close: %v", err)
	}
	if err := s.WaitWebhooks(context.Background()); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("WaitWebhooks after Close: %v", err)
	}
	n := len(s.Deliveries())
	time.Sleep(20 * time.Millisecond)
	if m := len(s.Deliveries()); m != n {
		t.Errorf("deliveries went on after Close: %d then %d", n, m)
	}
	client.CloseIdleConnections()
	rcv.Close()
	goleak.VerifyNone(t, ignore)
}

// BenchmarkWebhooks measures a payment created and its webhook delivered
// to a receiver on loopback, against the same payment without webhooks.
func BenchmarkWebhooks(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("webhooks=%v", on), func(b *testing.B) {
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
			}))
			defer rcv.Close()
			var opts []spotflowtest.Option
			if on {
				opts = append(opts, spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: rcv.URL}))
			}
			s := spotflowtest.NewServer(opts...)
			defer s.Close()
			client := s.Client()
			b.ResetTimer()
			for i := range b.N {
				req, _ := http.NewRequest("POST", s.BaseURL()+"/payments", strings.NewReader(paymentBody(fmt.Sprint("p-", i), 1, "o")))
				req.Header.Set("Authorization", "Bearer "+s.SecretKey())
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err := s.WaitWebhooks(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if on && len(s.Deliveries()) != b.N {
				b.Fatalf("%d deliveries for %d payments", len(s.Deliveries()), b.N)
			}
		})
	}
}
