package spotflowtest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

func checkoutBody(reference string) string {
	return fmt.Sprintf(`{"reference":%q,"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"metadata":{"order_id":%q}}`, reference, reference)
}

// verifyStatus returns the status GET /payments/verify shows for reference.
func (h *harness) verifyStatus(reference string) string {
	h.t.Helper()
	r := h.do("GET", "/payments/verify?reference="+reference, "")
	if r.status != 200 {
		h.t.Fatalf("verify %s: %v", reference, r)
	}
	var p struct{ Status string }
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		h.t.Fatal(err)
	}
	return p.Status
}

func TestInitializePayment(t *testing.T) {
	pending := regexp.MustCompile(`^\{"id":"pay_[0-9a-f]{16}","reference":"ref-1","amount":5000,"currency":"NGN","status":"pending",` +
		`"checkoutUrl":"https://checkout\.spotflow\.invalid/([0-9a-f]{12})","paymentCode":"([0-9a-f]{12})","metadata":\{"order_id":"ref-1"\}\}$`)
	h := newHarness(t, spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}))
	r := h.do("POST", "/payments/initialize", checkoutBody("ref-1"))
	m := pending.FindStringSubmatch(r.body)
	if r.status != 200 || m == nil || m[1] != m[2] {
		t.Fatalf("initialize: %v", r)
	}
	p, ok := h.s.Payment("ref-1")
	if !ok || p.Status != "pending" || p.PaymentCode != m[2] || p.CheckoutURL != "https://checkout.spotflow.invalid/"+m[2] ||
		p.Amount != 5000 || p.CustomerEmail != "a@b.c" || p.ReferenceAssigned {
		t.Errorf("ledger: %+v %v", p, ok)
	}
	if got := h.verifyStatus("ref-1"); got != "pending" {
		t.Errorf("verify shows %q before the customer finished, want pending", got)
	}

	for _, tt := range []struct{ name, body string }{
		{"no reference", `{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"}}`},
		{"empty reference", `{"reference":"","amount":5000,"currency":"NGN","customer":{"email":"a@b.c"}}`},
		{"no amount", `{"reference":"r","currency":"NGN","customer":{"email":"a@b.c"}}`},
		{"no currency", `{"reference":"r","amount":5000,"customer":{"email":"a@b.c"}}`},
		{"no email", `{"reference":"r","amount":5000,"currency":"NGN","customer":{}}`},
		{"not json", `{"reference":`},
	} {
		if r := h.do("POST", "/payments/initialize", tt.body); r.status != 400 || r.body != missingParameter {
			t.Errorf("%s: %v", tt.name, r)
		}
	}
	if r := h.do("GET", "/payments/initialize", ""); r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET: %v Allow %q", r, r.header.Get("Allow"))
	}
	if got := len(h.s.Payments()); got != 1 {
		t.Errorf("%d payments, want 1", got)
	}
}

// A checkout shares the payments' references and keeps the Idempotency-Key
// rules of POST /payments, replaying its 200.
func TestInitializeIdempotency(t *testing.T) {
	h := newHarness(t, spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}))
	body := checkoutBody("ref-1")
	first := h.do("POST", "/payments/initialize", body, "Idempotency-Key", "k-1")
	if first.status != 200 {
		t.Fatal(first)
	}
	tests := []struct {
		name, path, body, key string
		status                int
		want                  string
		replayed              bool
	}{
		{"same key and body", "/payments/initialize", body, "k-1", 200, first.body, true},
		{"same key, other body", "/payments/initialize", checkoutBody("ref-2"), "k-1", 422, keyReused, false},
		{"same key, other route", "/payments", body, "k-1", 422, keyReused, false},
		{"new key, used reference", "/payments/initialize", body, "k-2", 400, duplicateReference, false},
		{"direct payment, reference of a checkout", "/payments", body, "k-3", 400, duplicateReference, false},
	}
	for _, tt := range tests {
		r := h.do("POST", tt.path, tt.body, "Idempotency-Key", tt.key)
		if r.status != tt.status || r.body != tt.want || (r.header.Get("Idempotent-Replayed") == "true") != tt.replayed {
			t.Errorf("%s: got %v replayed %q, want %d %s", tt.name, r, r.header.Get("Idempotent-Replayed"), tt.status, tt.want)
		}
	}
	if r := h.do("POST", "/payments", paymentBody("direct", 1, "o")); r.status != 201 {
		t.Fatal(r)
	}
	if r := h.do("POST", "/payments/initialize", checkoutBody("direct")); r.status != 400 || r.body != duplicateReference {
		t.Errorf("checkout with a direct payment's reference: %v", r)
	}
	if got := h.s.Charges("ref-1"); got != 1 {
		t.Errorf("Charges = %d, want 1", got)
	}
}

// An after-commit fault on initialize leaves a checkout behind; the retry
// with the key gets the original pending answer.
func TestInitializeResetAfterCommit(t *testing.T) {
	h := newHarness(t, spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}),
		spotflowtest.WithFaults(spotflowtest.Faults{Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit}}))
	if r := h.do("POST", "/payments/initialize", checkoutBody("ref-1"), "Idempotency-Key", "k"); r.err == nil {
		t.Fatalf("first attempt answered: %v", r)
	}
	r := h.do("POST", "/payments/initialize", checkoutBody("ref-1"), "Idempotency-Key", "k")
	p, _ := h.s.Payment("ref-1")
	if r.status != 200 || r.header.Get("Idempotent-Replayed") != "true" || p.Status != "pending" || h.s.Charges("ref-1") != 1 {
		t.Errorf("retry: %v; ledger %+v", r, p)
	}
}

// The customer finishes on the server's clock: verify shows pending until
// the delay has passed, then the outcome.
func TestCheckoutCompletesOnServerClock(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, spotflowtest.WithClock(clock.Now), spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Minute}))
	if r := h.do("POST", "/payments/initialize", checkoutBody("ref-1")); r.status != 200 {
		t.Fatal(r)
	}
	clock.Advance(time.Minute - time.Nanosecond)
	if got := h.verifyStatus("ref-1"); got != "pending" {
		t.Fatalf("before the delay: %q", got)
	}
	if st := h.s.Stats(); st.CheckoutsCompleted != 0 {
		t.Fatalf("CheckoutsCompleted = %d before the delay", st.CheckoutsCompleted)
	}
	clock.Advance(time.Nanosecond)
	if got := h.verifyStatus("ref-1"); got != "successful" {
		t.Fatalf("after the delay: %q, want successful", got)
	}
	if st := h.s.Stats(); st.CheckoutsCompleted != 1 {
		t.Errorf("CheckoutsCompleted = %d, want 1", st.CheckoutsCompleted)
	}
	if ps := h.s.Payments(); ps[0].Status != "successful" {
		t.Errorf("ledger: %+v", ps[0])
	}
}

// outcomes initializes the references in order and returns each one's
// status once every customer has finished.
func outcomes(t *testing.T, refs []string, opts ...spotflowtest.Option) map[string]string {
	t.Helper()
	clock := newFakeClock()
	h := newHarness(t, append([]spotflowtest.Option{spotflowtest.WithClock(clock.Now)}, opts...)...)
	for _, ref := range refs {
		if r := h.do("POST", "/payments/initialize", checkoutBody(ref)); r.status != 200 {
			t.Fatal(r)
		}
	}
	clock.Advance(24 * time.Hour)
	out := make(map[string]string, len(refs))
	for _, p := range h.s.Payments() {
		out[p.Reference] = p.Status
	}
	return out
}

// The share of failed checkouts follows FailureRate, and each outcome is a
// function of the seed and the reference, not of arrival order.
func TestCheckoutFailureRate(t *testing.T) {
	refs := make([]string, 300)
	for i := range refs {
		refs[i] = fmt.Sprint("order-", i)
	}
	cfg := spotflowtest.WithCheckout(spotflowtest.Checkout{FailureRate: 0.3, Delay: time.Second})
	a := outcomes(t, refs, cfg)
	failed := 0
	for _, s := range a {
		switch s {
		case "failed":
			failed++
		case "successful":
		default:
			t.Fatalf("status %q after every customer finished", s)
		}
	}
	if failed < 60 || failed > 120 {
		t.Errorf("%d of 300 failed, want about 90", failed)
	}
	reversed := slices.Clone(refs)
	slices.Reverse(reversed)
	if b := outcomes(t, reversed, cfg); !maps(a, b) {
		t.Error("outcomes changed with the arrival order")
	}
	if c := outcomes(t, refs, cfg, spotflowtest.WithSeed(2)); maps(a, c) {
		t.Error("outcomes did not change with the seed")
	}
	for _, s := range outcomes(t, refs[:50], spotflowtest.WithCheckout(spotflowtest.Checkout{FailureRate: 1})) {
		if s != "failed" {
			t.Fatalf("FailureRate 1: a checkout is %q", s)
		}
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Each customer takes Delay plus a share of DelayJitter of their own.
func TestCheckoutDelayJitter(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, spotflowtest.WithClock(clock.Now),
		spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: 10 * time.Second, DelayJitter: 10 * time.Second}))
	const n = 40
	for i := range n {
		if r := h.do("POST", "/payments/initialize", checkoutBody(fmt.Sprint("ref-", i))); r.status != 200 {
			t.Fatal(r)
		}
	}
	done := map[int]int{} // second → checkouts finished by then
	for sec := 0; sec <= 20; sec++ {
		done[sec] = h.s.Stats().CheckoutsCompleted
		clock.Advance(time.Second)
	}
	if done[9] != 0 || done[20] != n {
		t.Errorf("finished by 9 s: %d, by 20 s: %d; want 0 and %d", done[9], done[20], n)
	}
	if done[14] == 0 || done[14] == n {
		t.Errorf("finished by 14 s: %d; the jitter should spread them over 10-20 s", done[14])
	}
}

func TestCompleteCheckout(t *testing.T) {
	h := newHarness(t, spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}))
	h.do("POST", "/payments/initialize", checkoutBody("paid"))
	h.do("POST", "/payments/initialize", checkoutBody("declined"))
	h.do("POST", "/payments", paymentBody("direct", 1, "o"))
	if err := h.s.CompleteCheckout("paid", true); err != nil {
		t.Fatal(err)
	}
	if err := h.s.CompleteCheckout("declined", false); err != nil {
		t.Fatal(err)
	}
	if a, b := h.verifyStatus("paid"), h.verifyStatus("declined"); a != "successful" || b != "failed" {
		t.Errorf("verify: %q, %q", a, b)
	}
	for _, ref := range []string{"paid", "direct", "unknown"} {
		if err := h.s.CompleteCheckout(ref, false); !errors.Is(err, spotflowtest.ErrNotPending) {
			t.Errorf("CompleteCheckout(%q) = %v, want ErrNotPending", ref, err)
		}
	}
	if got := h.verifyStatus("paid"); got != "successful" {
		t.Errorf("a completed checkout changed: %q", got)
	}
}

// Checkouts completed by hand out of due order leave the others to finish
// on time, each once.
func TestCompleteCheckoutOutOfOrder(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, spotflowtest.WithClock(clock.Now),
		spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Minute, DelayJitter: time.Minute}))
	const n = 30
	for i := range n {
		h.do("POST", "/payments/initialize", checkoutBody(fmt.Sprint("c-", i)))
	}
	byHand := map[string]bool{}
	for i := 3; i < n; i += 4 {
		ref := fmt.Sprint("c-", i)
		byHand[ref] = true
		if err := h.s.CompleteCheckout(ref, false); err != nil {
			t.Fatal(err)
		}
	}
	if st := h.s.Stats(); st.CheckoutsCompleted != len(byHand) {
		t.Fatalf("CheckoutsCompleted = %d, want %d", st.CheckoutsCompleted, len(byHand))
	}
	clock.Advance(2 * time.Minute)
	for _, p := range h.s.Payments() {
		if want := map[bool]string{true: "failed", false: "successful"}[byHand[p.Reference]]; p.Status != want {
			t.Errorf("%s: %q, want %q", p.Reference, p.Status, want)
		}
	}
	if st := h.s.Stats(); st.CheckoutsCompleted != n {
		t.Errorf("CheckoutsCompleted = %d, want %d", st.CheckoutsCompleted, n)
	}
}
