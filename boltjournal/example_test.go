package boltjournal_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A payment whose answer is lost stays in the journal file; the next
// process to open the file settles it.
func ExampleOpen() {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer sim.Close()
	dir, err := os.MkdirTemp("", "journal")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "spotflow.db")

	// One process: the payment is created, but its answer is lost.
	j, err := boltjournal.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithJournal(j), spotflowhttp.WithMaxAttempts(1))}
	req, _ := http.NewRequest(http.MethodPost, sim.BaseURL()+"/payments",
		strings.NewReader(`{"reference":"order-7","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	if _, err := client.Do(req); err != nil {
		fmt.Println("no answer")
	}
	j.Close()

	// The next process opens the file and settles what it holds.
	j, err = boltjournal.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer j.Close()
	pending, _ := j.Pending(context.Background())
	fmt.Println("pending:", len(pending), pending[0].Reference)
	rec, err := spotflowhttp.NewReconciler(j, nil,
		func(req *http.Request, _ spotflowhttp.Entry) error {
			req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
			return nil
		},
		func(s spotflowhttp.Settlement) { fmt.Println(s.Entry.Reference, s.Outcome, "by", s.By) },
		spotflowhttp.WithVerifyAfter(0))
	if err != nil {
		log.Fatal(err)
	}
	rec.ReconcileOnce(context.Background())
	// Output:
	// no answer
	// pending: 1 order-7
	// order-7 created by verify
}
