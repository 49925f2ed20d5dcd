package spotflowhttp_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A payment whose connection resets after Spotflow created it ends
// uncertain; the journal keeps it, and a Reconciler finds out what became
// of it. In a service, open a file journal (boltjournal.Open) so the entry
// also survives a crash, run rec.Run(ctx) in the background, and feed it
// webhooks with rec.Observe.
func ExampleReconciler() {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit}, // the first attempt of each payment
	}))
	defer sim.Close()
	journal := spotflowhttp.NewMemoryJournal()
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithJournal(journal), spotflowhttp.WithMaxAttempts(1))}

	req, _ := http.NewRequest(http.MethodPost, sim.BaseURL()+"/payments",
		strings.NewReader(`{"reference":"order-1001","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	_, err := client.Do(req)
	var e *spotflowhttp.Error
	fmt.Println("uncertain:", errors.As(err, &e) && e.Uncertain)

	rec, err := spotflowhttp.NewReconciler(journal, nil,
		func(req *http.Request, e spotflowhttp.Entry) error {
			// Look the credential up by e.Account when serving many merchants.
			req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
			return nil
		},
		func(s spotflowhttp.Settlement) {
			fmt.Println(s.Entry.Reference, s.Outcome, "by", s.By, s.Status)
		},
		spotflowhttp.WithVerifyAfter(0)) // no webhook to wait for here
	if err != nil {
		log.Fatal(err)
	}
	left, err := rec.ReconcileOnce(context.Background())
	fmt.Println("left:", left, err)
	// Output:
	// uncertain: true
	// order-1001 created by verify successful
	// left: 0 <nil>
}

// A person settles an entry a Reconciler could not: here, a payment the
// customer confirmed by phone. The spotflow-journal command's resolve does
// this on a journal file, and writes record's line to an audit file.
func ExampleResolve() {
	journal := spotflowhttp.NewMemoryJournal()
	journal.Record(context.Background(), spotflowhttp.Entry{
		Key: "3f2a", Reference: "order-1002", Method: http.MethodPost,
		URL: "https://api.spotflow.co/api/v1/payments",
	})
	s, err := spotflowhttp.Resolve(context.Background(), journal, "3f2a", spotflowhttp.OutcomeCreated,
		"customer confirmed by phone",
		func(s spotflowhttp.Settlement) error {
			fmt.Println("audit:", s.Entry.Reference, s.Outcome, "by", s.By, "-", s.Note)
			return nil
		})
	fmt.Println(s.Outcome, err)
	left, _ := journal.Pending(context.Background())
	fmt.Println("left:", len(left))
	// Output:
	// audit: order-1002 created by person - customer confirmed by phone
	// created <nil>
	// left: 0
}
