package boltjournal_test

import (
	"context"
	"errors"
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

// An operator looks at what a journal holds without changing it: no claim
// is freed or taken, and writes are refused.
func ExampleOpenReadOnly() {
	dir, err := os.MkdirTemp("", "journal")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "spotflow.db")
	j, err := boltjournal.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	j.Record(context.Background(), spotflowhttp.Entry{Key: "k1", Reference: "order-7",
		Method: http.MethodPost, URL: "https://api.spotflow.co/api/v1/payments", Owner: "call-1"})
	j.Close()

	ro, err := boltjournal.OpenReadOnly(path)
	if err != nil {
		log.Fatal(err)
	}
	defer ro.Close()
	pending, _ := ro.Pending(context.Background())
	for _, e := range pending {
		fmt.Println(e.Key, e.Reference, e.Owner)
	}
	fmt.Println(ro.Settle(context.Background(), "k1", "call-1"))
	// Output:
	// k1 order-7 call-1
	// false boltjournal: journal opened read-only
}

// A journal whose meta pages were lost (here zeroed) cannot be opened, but
// the entries its pages still hold can be read out.
func ExampleSalvage() {
	dir, err := os.MkdirTemp("", "journal")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "spotflow.db")
	j, err := boltjournal.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	j.Record(context.Background(), spotflowhttp.Entry{Key: "k1", Reference: "order-7",
		Method: http.MethodPost, URL: "https://api.spotflow.co/api/v1/payments"})
	j.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		log.Fatal(err)
	}
	f.WriteAt(make([]byte, 2*os.Getpagesize()), 0) // both meta pages
	f.Close()

	_, err = boltjournal.Open(path)
	fmt.Println(errors.Is(err, boltjournal.ErrDamaged))
	entries, err := boltjournal.Salvage(path)
	for _, e := range entries {
		fmt.Println(e.Key, e.Reference)
	}
	var se *boltjournal.SalvageError
	if errors.As(err, &se) {
		fmt.Println("found only outside the tree:", se.Unreached)
	}
	// Output:
	// true
	// k1 order-7
	// found only outside the tree: [k1]
}
