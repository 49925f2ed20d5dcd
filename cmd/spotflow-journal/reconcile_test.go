package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

const liveURL = "https://api.spotflow.co/api/v1/payments"

func payment(ref string) []byte {
	return []byte(`{"reference":"` + ref + `","amount":5000,"currency":"NGN","customer":{"email":"` + secret + `"}}`)
}

// reconcileEntries are entries whose fates differ: r-a was created before
// the process died (verify finds it), r-b never reached Spotflow (a re-send
// creates it), r-c cannot be created (a re-send is refused: not created),
// r-d is past the idempotency window (needs a human), r-e belongs to
// account shop-7.
func reconcileEntries(t *testing.T, sim *spotflowtest.Server, now time.Time) []spotflowhttp.Entry {
	t.Helper()
	req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments", strings.NewReader(string(payment("r-a"))))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	req.Header.Set("Idempotency-Key", "key-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("creating r-a: %s", resp.Status)
	}
	h := map[string][]string{"Content-Type": {"application/json"}}
	return []spotflowhttp.Entry{
		{Key: "key-a", Reference: "r-a", Method: "POST", URL: liveURL, Header: h, Body: payment("r-a"), Time: now.Add(-time.Hour)},
		{Key: "key-b", Reference: "r-b", Method: "POST", URL: liveURL, Header: h, Body: payment("r-b"), Time: now.Add(-50 * time.Minute)},
		{Key: "key-c", Reference: "r-c", Method: "POST", URL: liveURL, Header: h, Body: []byte(`{"reference":"r-c","currency":"NGN"}`), Time: now.Add(-40 * time.Minute)},
		{Key: "key-d", Reference: "r-d", Method: "POST", URL: liveURL, Header: h, Body: payment("r-d"), Time: now.Add(-25 * time.Hour)},
		{Key: "key-e", Reference: "r-e", Account: "shop-7", Method: "POST", URL: liveURL, Header: h, Body: payment("r-e"), Time: now.Add(-30 * time.Minute)},
	}
}

func TestReconcileSettlesEachEntryAndSaysWhatNeedsAHuman(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	path := fillBolt(t, nil, reconcileEntries(t, sim, time.Now()))
	env := []string{"SPOTFLOW_SECRET_KEY=" + sim.SecretKey()}

	r := sj(t, env, "reconcile", "-file", path, "-base-url", sim.BaseURL())
	r.want(t, 1, "SPOTFLOW_SECRET_KEY_SHOP_7 is not set: 1 entry left pending", "1 entry needing a human: decide each with spotflow-journal resolve")
	for _, line := range []string{
		"key-a  r-a  created by verify  status successful",
		"key-b  r-b  created by resend  status successful",
		"key-c  r-c  not_created by resend",
		"key-d  r-d  needs_human by expiry",
		"settled 3: created 2, not_created 1; needs_human 1, left pending for resolve; pending 2 in all",
	} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("stdout lacks %q:\n%s", line, r.stdout)
		}
	}
	if n := sim.Charges("r-b"); n != 1 {
		t.Errorf("r-b charged %d times, want 1", n)
	}
	if es := pendingIn(t, path); len(es) != 2 || es[0].Key != "key-d" || es[0].Owner != "" && es[0].Until.After(time.Now()) || es[1].Key != "key-e" {
		t.Errorf("pending after: %+v, want key-d (free, for a person) and key-e", es)
	}
	b, _ := os.ReadFile(path + ".audit.jsonl")
	if n := strings.Count(string(b), "\n"); n != 4 || !strings.Contains(string(b), `"by":"expiry"`) {
		t.Errorf("audit file has %d lines:\n%s", n, b)
	}

	sj(t, nil, "resolve", "-file", path, "-outcome", "not_created", "-note", "r-d never reached the bank", "key-d").want(t, 0)
	r = sj(t, append(env, "SPOTFLOW_SECRET_KEY_SHOP_7="+sim.SecretKey()), "reconcile", "-json", "-file", path, "-base-url", sim.BaseURL())
	r.want(t, 0, "settled 1: created 1, not_created 0; needs_human 0, left pending for resolve; pending 0 in all")
	if !strings.Contains(r.stdout, `"key":"key-e"`) || !strings.Contains(r.stdout, `"account":"shop-7"`) {
		t.Errorf("reconcile -json:\n%s", r.stdout)
	}
}

func TestReconcileOfASealedJournalResendsOnlyWithItsKey(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	entries := reconcileEntries(t, sim, time.Now())[:2] // r-a (created), r-b (never sent)
	path := fillBolt(t, sealKey, entries)
	env := []string{"SPOTFLOW_SECRET_KEY=" + sim.SecretKey()}

	r := sj(t, env, "reconcile", "-file", path, "-base-url", sim.BaseURL())
	r.want(t, 0, "2 entries sealed: without the key")
	if !strings.Contains(r.stdout, "key-a  r-a  created by verify") || strings.Contains(r.stdout, "key-b") {
		t.Errorf("without the key:\n%s", r.stdout)
	}
	if sim.Charges("r-b") != 0 {
		t.Error("r-b was sent again without its key")
	}
	r = sj(t, append(env, "SPOTFLOW_JOURNAL_KEY="+strings.Repeat("07", 32)), "reconcile", "-file", path, "-base-url", sim.BaseURL())
	r.want(t, 0)
	if !strings.Contains(r.stdout, "key-b  r-b  created by resend") || sim.Charges("r-b") != 1 {
		t.Errorf("with the key: %d charges of r-b\n%s", sim.Charges("r-b"), r.stdout)
	}
}

func TestReconcileWithoutAnyCredentialIsBadUsage(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	path := fillBolt(t, nil, reconcileEntries(t, sim, time.Now())[:1])
	sj(t, nil, "reconcile", "-file", path, "-base-url", sim.BaseURL()).want(t, 2, "no credential set")
	if len(pendingIn(t, path)) != 1 {
		t.Error("an entry was settled without a credential")
	}
}

func TestRebaseKeepsThePathAfterTheAPIPrefix(t *testing.T) {
	var got []string
	rt := &rebase{rt: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = append(got, r.URL.String())
		return &http.Response{StatusCode: 204, Body: http.NoBody, Request: r}, nil
	})}
	rt.base, _ = parseBaseURL("http://127.0.0.1:8080/mock/api/v1/")
	for _, u := range []string{"https://api.spotflow.co/api/v1/payments", "https://u:p@api.spotflow.co/api/v1/payments/verify?reference=r-1", "https://other.example/transfers"} {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", u, nil)
		rt.RoundTrip(req)
	}
	want := []string{"http://127.0.0.1:8080/mock/api/v1/payments", "http://127.0.0.1:8080/mock/api/v1/payments/verify?reference=r-1", "http://127.0.0.1:8080/mock/api/v1/transfers"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("rebased to %v, want %v", got, want)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestReconcileOfManyEntriesReportsProgressOnStderr(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	now := time.Now()
	var entries []spotflowhttp.Entry
	for i := range 120 {
		ref := fmt.Sprintf("r-%03d", i)
		entries = append(entries, spotflowhttp.Entry{Key: "key-" + ref, Reference: ref, Method: "POST", URL: liveURL,
			Header: map[string][]string{"Content-Type": {"application/json"}}, Body: payment(ref), Time: now.Add(-time.Hour)})
	}
	path := fillBolt(t, nil, entries)
	r := sj(t, []string{"SPOTFLOW_SECRET_KEY=" + sim.SecretKey()}, "reconcile", "-json", "-file", path, "-base-url", sim.BaseURL())
	r.want(t, 0, "reconcile: 100 of 120 entries settled", "settled 120: created 120")
	if n := strings.Count(r.stdout, "\n"); n != 120 || strings.Contains(r.stdout, "reconcile:") {
		t.Errorf("stdout has %d lines, want the 120 settlements and nothing else", n)
	}
	if len(sim.Payments()) != 120 {
		t.Errorf("%d payments, want 120", len(sim.Payments()))
	}
}
