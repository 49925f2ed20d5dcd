package boltjournal_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaltest"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// TestSealedJournal: a sealed bolt journal keeps the Journal contract.
func TestSealedJournal(t *testing.T) {
	journaltest.Run(t, func(t *testing.T) spotflowhttp.Journal {
		j, err := spotflowhttp.SealJournal(open(t), bytes.Repeat([]byte{1}, 32))
		if err != nil {
			t.Fatal(err)
		}
		return j
	})
}

// TestSealedFileHoldsNoCustomerData: with sealing, neither a pending entry's
// body and header nor those of an entry since settled (whose bytes bbolt
// leaves in free pages) are in the file in any encoding; without it (the
// control run), each is, so the search would see a leak.
func TestSealedFileHoldsNoCustomerData(t *testing.T) {
	secrets := map[string][2]string{ // entry key: body's, header's
		"pending": {"zq-PendingBody<ada>7731@example.com", "zq-PendingHeader<ada>7731"},
		"settled": {"zq-SettledBody<bob>4419@example.com", "zq-SettledHeader<bob>4419"},
	}
	for _, sealed := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "journal.db")
		f, err := boltjournal.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var j spotflowhttp.Journal = f
		if sealed {
			if j, err = spotflowhttp.SealJournal(f, bytes.Repeat([]byte{7}, 32)); err != nil {
				t.Fatal(err)
			}
		}
		ctx := context.Background()
		for key, s := range secrets {
			e := journaltest.Sample(key, 0)
			e.Body = []byte(`{"amount":5000,"customer":{"email":"` + s[0] + `"}}`)
			e.Header.Set("X-Note", s[1])
			if err := j.Record(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := j.Settle(ctx, "settled", "call-1"); !ok || err != nil {
			t.Fatalf("Settle: %v, %v", ok, err)
		}
		if es, err := j.Pending(ctx); err != nil || len(es) != 1 || !strings.Contains(string(es[0].Body), secrets["pending"][0]) {
			t.Fatalf("sealed %v: Pending = %+v, %v", sealed, es, err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			for _, secret := range s {
				if found := journaltest.Holds(raw, secret); found == sealed {
					t.Errorf("sealed %v: %q found in the file: %v", sealed, secret, found)
				}
			}
		}
	}
}

// TestReconcileSealedFile: a payment sent through a transport over a
// sealed file journal, whose connection reset before it was created, is
// settled after the file is opened again by a reconciler that sends it
// again with the body as sent; the file never held the body.
func TestReconcileSealedFile(t *testing.T) {
	const email = "zq-Customer7731@example.com"
	key := bytes.Repeat([]byte{9}, 32)
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetBeforeCommit}}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "journal.db")
	f, err := boltjournal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := spotflowhttp.SealJournal(f, key)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: spotflowhttp.NewTransport(srv.Client().Transport,
		spotflowhttp.WithJournal(j), spotflowhttp.WithMaxAttempts(1))}
	req, _ := http.NewRequest(http.MethodPost, srv.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","reference":"ord-1","customer":{"email":"`+email+`"}}`))
	req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
	var e *spotflowhttp.Error
	if _, err := client.Do(req); !errors.As(err, &e) || !e.Uncertain {
		t.Fatalf("the call ended %v, want uncertain", err)
	}
	f.Close() // the process ends

	f, err = boltjournal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if j, err = spotflowhttp.SealJournal(f, key); err != nil {
		t.Fatal(err)
	}
	var settled []spotflowhttp.Settlement
	rec, err := spotflowhttp.NewReconciler(j, srv.Client().Transport,
		func(req *http.Request, _ spotflowhttp.Entry) error {
			req.Header.Set("Authorization", "Bearer "+srv.SecretKey())
			return nil
		},
		func(s spotflowhttp.Settlement) { settled = append(settled, s) },
		spotflowhttp.WithVerifyAfter(0))
	if err != nil {
		t.Fatal(err)
	}
	if left, err := rec.ReconcileOnce(context.Background()); left != 0 || err != nil {
		t.Fatalf("ReconcileOnce = %d, %v", left, err)
	}
	if len(settled) != 1 || settled[0].Outcome != spotflowhttp.OutcomeCreated || settled[0].By != spotflowhttp.SettledByResend {
		t.Fatalf("settled %+v; want ord-1 created by re-send", settled)
	}
	if p := srv.Payments(); len(p) != 1 || p[0].CustomerEmail != email || srv.Charges("ord-1") != 1 {
		t.Errorf("ledger %+v; want the body as sent, charged once", p)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if journaltest.Holds(raw, email) {
		t.Error("the customer's email is in the journal file")
	}
}
