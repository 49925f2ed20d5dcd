package spotflowtest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// control sends a request under ControlPrefix, without a key.
func (h *harness) control(method, path string) result {
	h.t.Helper()
	req, err := http.NewRequest(method, h.s.URL+spotflowtest.ControlPrefix+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

func TestControlLedger(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/payments", paymentBody("c-1", 5000, "o-1"), "Idempotency-Key", "k-1")
	h.do("POST", "/payments", paymentBody("c-1", 5000, "o-1"), "Idempotency-Key", "k-1")
	h.do("POST", "/transfers", transferBody("t-1", 700))
	r := h.control("GET", "/ledger")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /_mock/ledger: %v", r)
	}
	want := regexp.MustCompile(`^\{"payments":\[\{"id":"pay_[0-9a-f]{16}","reference":"c-1","referenceAssigned":false,"amount":5000,"currency":"NGN","customerEmail":"a@b.c","metadata":\{"order_id":"o-1"\},"idempotencyKey":"k-1","status":"successful"\}\],` +
		`"transfers":\[\{"id":"trf_[0-9a-f]{16}","reference":"t-1","referenceAssigned":false,"amount":700,"currency":"NGN","destination":\{"accountNumber":"0123456789","bankCode":"058"\},"status":"successful"\}\],` +
		`"deliveries":\[\],"arrivals":\{"k-1":2\},"balance":999999300,"stats":\{"requests":3,"created":2,.*"replayed":1,`)
	if !want.MatchString(r.body) {
		t.Errorf("ledger:\n%s\nwant to match\n%s", r.body, want)
	}
	// Reading the ledger is not a request to the API.
	if st := h.s.Stats(); st.Requests != 3 {
		t.Errorf("Stats().Requests = %d after reading the ledger, want 3", st.Requests)
	}
	var l spotflowtest.Ledger
	if err := json.Unmarshal([]byte(r.body), &l); err != nil {
		t.Fatal(err)
	}
	if got := h.s.Ledger(); !reflect.DeepEqual(got, l) {
		t.Errorf("the JSON ledger does not read back as Ledger(): %+v", l)
	}
}

func TestControlCheckout(t *testing.T) {
	h := newHarness(t, spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}))
	h.do("POST", "/payments/initialize", paymentBody("chk-1", 5000, "o"))
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"POST", "/checkouts/chk-1?outcome=maybe", 400, `"code":"missing_parameter"`},
		{"POST", "/checkouts/chk-1?outcome=failed", 200, `"reference":"chk-1","amount":5000,"currency":"NGN","status":"failed"`},
		{"POST", "/checkouts/chk-1?outcome=successful", 404, `{"code":"not_pending","message":"No pending checkout with that reference"}`},
		{"POST", "/checkouts/unknown?outcome=failed", 404, `"code":"not_pending"`},
		{"GET", "/checkouts/chk-1?outcome=failed", 405, `"code":"method_not_allowed"`},
		{"GET", "/nothing", 404, `{"code":"not_found","message":"Not found"}`},
	}
	for _, tt := range tests {
		r := h.control(tt.method, tt.path)
		if r.status != tt.status || !strings.Contains(r.body, tt.body) {
			t.Errorf("%s %s: %v, want %d with %s", tt.method, tt.path, r, tt.status, tt.body)
		}
	}
	if r := h.do("GET", "/payments/verify?reference=chk-1", ""); !strings.Contains(r.body, `"status":"failed"`) {
		t.Errorf("verify after the checkout failed: %v", r)
	}
}

func TestControlOutage(t *testing.T) {
	h := newHarness(t)
	if r := h.control("POST", "/outage?duration=nope"); r.status != 400 {
		t.Errorf("outage with a bad duration: %v, want 400", r)
	}
	if r := h.control("POST", "/outage?duration=1h"); r.status != 204 {
		t.Fatalf("outage: %v, want 204", r)
	}
	if r := h.do("POST", "/payments", paymentBody("o-1", 5000, "o")); r.status != 503 {
		t.Errorf("payment in the outage: %v, want 503", r)
	}
	if r := h.control("GET", "/ledger"); r.status != 200 {
		t.Errorf("ledger in the outage: %v, want 200: control is not the API", r)
	}
}

func TestControlWaitWebhooks(t *testing.T) {
	// No URL: the event waits, so the wait times out.
	h := newHarness(t, spotflowtest.WithWebhooks(spotflowtest.Webhooks{}))
	if r := h.control("POST", "/webhooks/wait?timeout=10s"); r.status != 204 {
		t.Errorf("wait with nothing to send: %v, want 204", r)
	}
	h.do("POST", "/payments", paymentBody("w-1", 5000, "o"))
	if r := h.control("POST", "/webhooks/wait?timeout=20ms"); r.status != 504 {
		t.Errorf("wait with a held event: %v, want 504", r)
	}
	for _, bad := range []string{"0s", "1h", "x"} {
		if r := h.control("POST", "/webhooks/wait?timeout="+bad); r.status != 400 {
			t.Errorf("wait with timeout=%s: %v, want 400", bad, r)
		}
	}
}

func TestRestrictedKey(t *testing.T) {
	h := newHarness(t, spotflowtest.WithRestrictedKey("sk_test_reader"))
	h.do("POST", "/payments", paymentBody("r-1", 5000, "o"))
	forbidden := regexp.MustCompile(`^\{"code":"forbidden","message":"This API key does not have permission to perform this action","statusCode":403,"requestMarker":"[0-9a-f]{24}"\}$`)
	for _, path := range []string{"/payments", "/payments/initialize", "/transfers"} {
		r := h.do("POST", path, paymentBody("r-2", 5000, "o"), "Authorization", "Bearer sk_test_reader")
		if r.status != 403 || !forbidden.MatchString(r.body) {
			t.Errorf("POST %s with the restricted key: %v, want 403 forbidden", path, r)
		}
	}
	if r := h.do("GET", "/payments/verify?reference=r-1", "", "Authorization", "Bearer sk_test_reader"); r.status != 200 {
		t.Errorf("verify with the restricted key: %v, want 200", r)
	}
	if r := h.do("GET", "/payments/verify?reference=r-1", "", "Authorization", "Bearer sk_test_other"); r.status != 401 {
		t.Errorf("verify with another key: %v, want 401", r)
	}
	if st := h.s.Stats(); st.Forbidden != 3 || st.Created != 1 {
		t.Errorf("Stats: Forbidden %d, Created %d; want 3 and 1", st.Forbidden, st.Created)
	}
}
