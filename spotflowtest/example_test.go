package spotflowtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A payment is created, then verified by its reference; the ledger shows it
// was charged once.
func ExampleServer() {
	s := spotflowtest.NewServer()
	defer s.Close()

	send := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, s.BaseURL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.SecretKey())
		if method == "POST" {
			req.Header.Set("Idempotency-Key", "order-1001")
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var obj map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&obj)
		return resp.StatusCode, obj
	}

	status, created := send("POST", "/payments",
		`{"reference":"order-1001","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"},"metadata":{"order_id":"1001"}}`)
	fmt.Println("create:", status, created["reference"], created["status"])

	status, verified := send("GET", "/payments/verify?reference=order-1001", "")
	fmt.Println("verify:", status, verified["amount"], verified["id"] == created["id"])

	fmt.Println("charges:", s.Charges("order-1001"))
	// Output:
	// create: 201 order-1001 successful
	// verify: 200 5000 true
	// charges: 1
}

// Failures can be scheduled per attempt: here every first attempt commits
// and then loses its connection, and the retry with the same
// Idempotency-Key is answered with the original success.
func ExampleFaults_schedule() {
	s := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer s.Close()

	body := `{"reference":"order-7","amount":100,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	for attempt := 1; attempt <= 2; attempt++ {
		req, _ := http.NewRequest("POST", s.BaseURL()+"/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.SecretKey())
		req.Header.Set("Idempotency-Key", "order-7")
		resp, err := s.Client().Do(req)
		if err != nil {
			fmt.Println("attempt", attempt, "failed: no response")
			continue
		}
		resp.Body.Close()
		fmt.Println("attempt", attempt, resp.StatusCode, "replayed:", resp.Header.Get("Idempotent-Replayed"))
	}
	fmt.Println("charges:", s.Charges("order-7"))
	// Output:
	// attempt 1 failed: no response
	// attempt 2 201 replayed: true
	// charges: 1
}

// A Clock makes waits instant and observable.
func ExampleClock() {
	c := spotflowtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	_ = c.Sleep(context.Background(), 30*time.Second)
	c.Advance(time.Second)
	fmt.Println(c.Now().Format(time.TimeOnly), c.Sleeps())
	// Output: 00:00:31 [30s]
}
