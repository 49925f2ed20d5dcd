package spotflowhttp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaltest"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

func TestMemoryJournal(t *testing.T) {
	journaltest.Run(t, func(*testing.T) spotflowhttp.Journal { return spotflowhttp.NewMemoryJournal() })
}

// recordingJournal is a MemoryJournal that lets a test look at the journal
// from inside the server, at the moment an attempt arrives, and can fail.
type recordingJournal struct {
	*spotflowhttp.MemoryJournal
	failRecord error
}

func (j *recordingJournal) Record(ctx context.Context, e spotflowhttp.Entry) error {
	if j.failRecord != nil {
		return j.failRecord
	}
	return j.MemoryJournal.Record(ctx, e)
}

func pendingOf(t *testing.T, j spotflowhttp.Journal) []spotflowhttp.Entry {
	t.Helper()
	es, err := j.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func journaledPayment(t *testing.T, ctx context.Context, srv *spotflowtest.Server, ref string) *http.Request {
	t.Helper()
	body := `{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"}`
	if ref != "" {
		body += `,"reference":"` + ref + `"`
	}
	body += "}"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.BaseURL()+"/payments", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	req.Header.Set("Content-Type", "application/json")
	return req
}

// TestJournalEntryWrittenBeforeFirstAttempt looks into the journal while
// the first attempt is at the server: the entry must be there, with the
// request as sent, and without the Authorization header.
func TestJournalEntryWrittenBeforeFirstAttempt(t *testing.T) {
	srv := spotflowtest.NewServer()
	defer srv.Close()
	j := spotflowhttp.NewMemoryJournal()
	var seen []spotflowhttp.Entry
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		seen = pendingOf(t, j)
		return srv.Client().Transport.RoundTrip(r)
	})
	clock := newFakeClock()
	client := &http.Client{Transport: spotflowhttp.NewTransport(base,
		spotflowhttp.WithJournal(j), spotflowhttp.WithReference("reference"), spotflowhttp.WithClock(clock))}
	ctx := spotflowhttp.ContextWithAccount(context.Background(), "merchant-7")
	resp, err := client.Do(journaledPayment(t, ctx, srv, ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	key := spotflowhttp.IdempotencyKeyOf(resp)
	if len(seen) != 1 {
		t.Fatalf("during the first attempt the journal had %d entries, want 1", len(seen))
	}
	e := seen[0]
	p := srv.Payments()[0]
	wantBody := `{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"reference":"` + key + `"}`
	if e.Key != key || e.Reference != p.Reference || e.Reference != key || e.Account != "merchant-7" ||
		e.Method != http.MethodPost || e.URL != srv.BaseURL()+"/payments" || string(e.Body) != wantBody ||
		!e.Time.Equal(clock.Now()) || e.Owner == "" || !e.Until.After(clock.Now()) {
		t.Errorf("entry = %+v\nwant key and reference %s, account merchant-7, body %s, held from now", e, key, wantBody)
	}
	if got := e.Header.Get("Idempotency-Key"); got != key {
		t.Errorf("entry's Idempotency-Key header = %q, want %q", got, key)
	}
	if len(e.Header) != 2 || e.Header.Get("Content-Type") != "application/json" {
		t.Errorf("entry's header = %v, want Content-Type and Idempotency-Key only", e.Header)
	}
	if where := secretIn(e, srv.SecretKey()); where != "" {
		t.Errorf("the entry holds the secret key in its %s", where)
	}
	if es := pendingOf(t, j); len(es) != 0 {
		t.Errorf("after a 201 the journal still has %+v", es)
	}
}

// secretIn names the field of e that holds secret, "" if none does: every
// field a journal stores, the headers' names and values included.
func secretIn(e spotflowhttp.Entry, secret string) string {
	for k, vs := range e.Header {
		for _, v := range append([]string{k}, vs...) {
			if strings.Contains(v, secret) {
				return "header " + k
			}
		}
	}
	for _, f := range []struct{ name, v string }{
		{"key", e.Key}, {"reference", e.Reference}, {"account", e.Account}, {"method", e.Method},
		{"URL", e.URL}, {"body", string(e.Body)}, {"owner", e.Owner},
	} {
		if strings.Contains(f.v, secret) {
			return f.name
		}
	}
	return ""
}

// TestJournalKeepsUncertainPending: a call that ends uncertain leaves its
// entry pending and released; certain failures settle theirs.
func TestJournalKeepsUncertainPending(t *testing.T) {
	for _, tc := range []struct {
		name      string
		faults    spotflowtest.Faults
		body      string
		uncertain bool
	}{
		{"reset after commit", spotflowtest.Faults{Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit}}, "", true},
		{"500 after commit", spotflowtest.Faults{Schedule: []spotflowtest.Fault{spotflowtest.FaultServerErrorAfterCommit}}, "", true},
		{"502 before commit", spotflowtest.Faults{Schedule: []spotflowtest.Fault{spotflowtest.FaultProxyError}}, "", true},
		{"400 missing_parameter", spotflowtest.Faults{}, `{"amount":5000}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := spotflowtest.NewServer(spotflowtest.WithFaults(tc.faults))
			defer srv.Close()
			j := spotflowhttp.NewMemoryJournal()
			clock := newFakeClock()
			client := &http.Client{Transport: spotflowhttp.NewTransport(srv.Client().Transport,
				spotflowhttp.WithJournal(j), spotflowhttp.WithMaxAttempts(1), spotflowhttp.WithClock(clock))}
			req := journaledPayment(t, context.Background(), srv, "order-1")
			if tc.body != "" {
				req, _ = http.NewRequest(http.MethodPost, srv.BaseURL()+"/payments", strings.NewReader(tc.body))
				req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
			}
			resp, err := client.Do(req)
			var e *spotflowhttp.Error
			if err == nil {
				resp.Body.Close()
				e = spotflowhttp.ErrorOf(resp)
			} else if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if e == nil || e.Uncertain != tc.uncertain {
				t.Fatalf("call ended with %v, want uncertain=%v", e, tc.uncertain)
			}
			es := pendingOf(t, j)
			if !tc.uncertain {
				if len(es) != 0 {
					t.Fatalf("a certain failure left %+v pending", es)
				}
				return
			}
			if len(es) != 1 || es[0].Key != e.IdempotencyKey || es[0].Reference != "order-1" {
				t.Fatalf("pending = %+v, want the call's entry (key %s)", es, e.IdempotencyKey)
			}
			if es[0].Until.After(clock.Now()) {
				t.Errorf("the uncertain call still holds its entry until %v (now %v)", es[0].Until, clock.Now())
			}
		})
	}
}

// TestJournalWriteFailureSendsNothing: no entry, no request.
func TestJournalWriteFailureSendsNothing(t *testing.T) {
	srv := spotflowtest.NewServer()
	defer srv.Close()
	disk := errors.New("disk full")
	j := &recordingJournal{MemoryJournal: spotflowhttp.NewMemoryJournal(), failRecord: disk}
	client := &http.Client{Transport: spotflowhttp.NewTransport(srv.Client().Transport, spotflowhttp.WithJournal(j))}
	body := newReadCloseCounter(strings.NewReader(`{"amount":1}`))
	req, _ := http.NewRequest(http.MethodPost, srv.BaseURL()+"/payments", body)
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(`{"amount":1}`)), nil }
	_, err := client.Do(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) || !errors.Is(err, disk) || e.Attempts != 0 || e.Uncertain || e.Category != spotflowhttp.CategoryRetry {
		t.Fatalf("err = %v, want a certain CategoryRetry *Error with 0 attempts wrapping the journal's error", err)
	}
	if n := srv.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached the server without a journal entry", n)
	}
	if body.closes.Load() == 0 {
		t.Error("the request body was not closed")
	}
}

// TestJournalSkipsUnkeyedAndReads: only keyed creates are journaled.
func TestJournalSkipsUnkeyedAndReads(t *testing.T) {
	srv := spotflowtest.NewServer()
	defer srv.Close()
	j := &recordingJournal{MemoryJournal: spotflowhttp.NewMemoryJournal(), failRecord: errors.New("must not be called")}
	client := &http.Client{Transport: spotflowhttp.NewTransport(srv.Client().Transport,
		spotflowhttp.WithJournal(j), spotflowhttp.WithKeyMethods())}
	// A POST without a key (no key methods), and a GET with one.
	resp, err := client.Do(journaledPayment(t, context.Background(), srv, "r1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequestWithContext(spotflowhttp.ContextWithIdempotencyKey(context.Background(), "k"),
		http.MethodGet, srv.BaseURL()+"/payments/verify?reference=r1", nil)
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// BenchmarkJournal is what a journal adds to a keyed create: the same POST
// through NewTransport to an in-memory server answering 201, with no
// journal, the in-memory one, and the file one (an fsync per write; Parallel
// has 16 callers share them through group commit).
func BenchmarkJournal(b *testing.B) {
	payload := []byte(`{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"reference":"r"}`)
	created := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r.Body.Close()
		return &http.Response{StatusCode: 201, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	send := func(b *testing.B, rt http.RoundTripper) {
		req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/api/v1/payments", bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer sk_test_x")
		resp, err := rt.RoundTrip(req)
		if err != nil || resp.StatusCode != 201 {
			b.Fatal(resp, err)
		}
	}
	for _, bc := range []struct {
		name string
		open func(b *testing.B) spotflowhttp.Journal
	}{
		{"None", func(*testing.B) spotflowhttp.Journal { return nil }},
		{"Memory", func(*testing.B) spotflowhttp.Journal { return spotflowhttp.NewMemoryJournal() }},
		{"File", func(b *testing.B) spotflowhttp.Journal {
			j, err := boltjournal.Open(filepath.Join(b.TempDir(), "journal.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { j.Close() })
			return j
		}},
	} {
		opts := func(b *testing.B) []spotflowhttp.Option {
			if j := bc.open(b); j != nil {
				return []spotflowhttp.Option{spotflowhttp.WithJournal(j)}
			}
			return nil
		}
		b.Run(bc.name, func(b *testing.B) {
			rt := spotflowhttp.NewTransport(created, opts(b)...)
			b.ReportAllocs()
			for b.Loop() {
				send(b, rt)
			}
		})
		b.Run(bc.name+"/Parallel", func(b *testing.B) {
			rt := spotflowhttp.NewTransport(created, opts(b)...)
			b.SetParallelism(8)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					send(b, rt)
				}
			})
		})
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

// The call that records an entry holds it until a minute after the call's
// deadline, so that no reconciler re-sends a create the call may still be
// sending (with a deadline past the default lease) or waits long for one
// whose call gave up (with a short deadline); without a deadline it holds
// it for DefaultJournalLease.
func TestJournalClaimLastsUntilAMinuteAfterTheDeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration // from now; 0 for none
		hold     time.Duration // from now
	}{
		{"no deadline", 0, spotflowhttp.DefaultJournalLease},
		{"deadline in 30s", 30 * time.Second, 30*time.Second + time.Minute},
		{"deadline in 2h", 2 * time.Hour, 2*time.Hour + time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			j := spotflowhttp.NewMemoryJournal()
			var during []spotflowhttp.Entry
			base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				during = pendingOf(t, j)
				r.Body.Close()
				return &http.Response{StatusCode: 201, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			})
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithJournal(j), spotflowhttp.WithClock(clock))
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, clock.Now().Add(tc.deadline))
				defer cancel()
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.spotflow.co/api/v1/payments", strings.NewReader(payment("ord-1")))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(during) != 1 {
				t.Fatalf("during the call the journal had %d entries, want 1", len(during))
			}
			if want := clock.Now().Add(tc.hold); !during[0].Until.Equal(want) {
				t.Errorf("the call holds its entry until %v from now, want %v", during[0].Until.Sub(clock.Now()), tc.hold)
			}
		})
	}
}

// The entry of a call never holds its credential, in any field: not the
// Authorization header, whatever else of the request's headers it keeps.
func TestJournalEntryKeepsNoAuthorizationHeader(t *testing.T) {
	const secret = "sk_live_journal_secret_42"
	j := spotflowhttp.NewMemoryJournal()
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r.Body.Close()
		return nil, io.ErrUnexpectedEOF // the outcome is uncertain: the entry stays
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithJournal(j), spotflowhttp.WithMaxAttempts(1))
	req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/api/v1/payments", strings.NewReader(payment("ord-1")))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("err = nil, want the connection error")
	}
	es := pendingOf(t, j)
	if len(es) != 1 {
		t.Fatalf("%d entries pending, want 1", len(es))
	}
	if where := secretIn(es[0], secret); where != "" {
		t.Errorf("the entry holds the credential in its %s: %v", where, es[0].Header)
	}
	if es[0].Header.Get("Accept") != "application/json" || es[0].Header.Get("Content-Type") != "application/json" {
		t.Errorf("entry's header = %v, want Accept and Content-Type kept", es[0].Header)
	}
}

// A reconciler leaves alone the entry of a call that is still within its
// deadline, even past DefaultJournalLease: it must not verify or re-send a
// create the call may still be sending.
func TestReconcilerLeavesACallWithinItsDeadlineAlone(t *testing.T) {
	clock := newFakeClock()
	j := spotflowhttp.NewMemoryJournal()
	var reconcilerSent atomic.Int64
	rec, err := spotflowhttp.NewReconciler(j,
		roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			reconcilerSent.Add(1)
			return answer(404, `{"code":"not_found"}`), nil
		}),
		func(*http.Request, spotflowhttp.Entry) error { return nil },
		func(s spotflowhttp.Settlement) { t.Errorf("settled while the call runs: %s", desc(s)) },
		spotflowhttp.WithClock(clock), spotflowhttp.WithVerifyAfter(0))
	if err != nil {
		t.Fatal(err)
	}
	var left int
	var recErr error
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r.Body.Close()
		// The call is slow: half an hour passes, and a reconciler looks.
		clock.Advance(spotflowhttp.DefaultJournalLease + 20*time.Minute)
		left, recErr = rec.ReconcileOnce(context.Background())
		return &http.Response{StatusCode: 201, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithJournal(j), spotflowhttp.WithClock(clock))
	ctx, cancel := context.WithDeadline(context.Background(), clock.Now().Add(2*time.Hour))
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.spotflow.co/api/v1/payments", strings.NewReader(payment("ord-1")))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if recErr != nil || left != 1 {
		t.Errorf("the reconciler found %d pending (%v), want the call's entry, held", left, recErr)
	}
	if n := reconcilerSent.Load(); n != 0 {
		t.Errorf("the reconciler sent %d requests about a create whose call, 2 h from its deadline, was still running", n)
	}
}
