package ogen_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ogen-go/ogen/validate"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/examples/ogen"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// An ogen client with the Spotflow error policy in its transport. The
// simulator resets the connection after the first attempt has created the
// payment; the retry carries the same idempotency key, so the payment is
// charged once and ogen sees only the final 201.
func Example() {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer sim.Close()

	// In production: ogen.NewSpotflowClient(ogen.DefaultServer, secretKey).
	// The short constant backoff only keeps the example quick.
	client, err := ogen.NewSpotflowClient(sim.BaseURL(), sim.SecretKey(),
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) }))
	if err != nil {
		panic(err)
	}

	res, err := client.CreatePayment(context.Background(), &ogen.PaymentRequest{
		Reference: ogen.NewOptString("order-2042"),
		Amount:    5000,
		Currency:  "NGN",
		Customer:  ogen.Customer{Email: "ada@example.com"},
	})
	if err != nil {
		panic(err)
	}
	created, ok := res.(*ogen.CreatePaymentCreated)
	fmt.Println(ok, created.Reference, created.Status)
	fmt.Println("charged", sim.Charges("order-2042"), "time(s)")
	// Output:
	// true order-2042 successful
	// charged 1 time(s)
}

// A declared failure (here a 401 for a revoked key) is ogen's typed value
// with a nil error. The response the stack returned, recorded through
// ContextWithResponse, still carries the annotation.
func Example_declaredStatus() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	client, err := ogen.NewSpotflowClient(sim.BaseURL(), "sk_test_revoked")
	if err != nil {
		panic(err)
	}

	ctx, response := ogen.ContextWithResponse(context.Background())
	res, err := client.VerifyPayment(ctx, ogen.VerifyPaymentParams{Reference: "order-2042"})
	if err != nil {
		panic(err)
	}
	if denied, ok := res.(*ogen.VerifyPaymentUnauthorized); ok {
		fmt.Println("typed:", denied.Code.Value, denied.Message.Value)
	}
	e := spotflowhttp.ErrorOf(response())
	fmt.Println("annotation:", e.StatusCode, e.Category, e.Attempts)
	// Output:
	// typed: invalid_credentials Invalid API key
	// annotation: 401 escalate 1
}

// A status the spec does not declare, such as a 503 from a proxy that
// outlasts every retry, is an error carrying the final response, and
// ErrorOf reads the annotation from it.
func Example_undeclaredStatus() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	client, err := ogen.NewSpotflowClient(srv.URL, "sk_test_x",
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Millisecond) }))
	if err != nil {
		panic(err)
	}

	_, err = client.VerifyPayment(context.Background(), ogen.VerifyPaymentParams{Reference: "order-2042"})
	var unexpected *validate.UnexpectedStatusCodeError
	if errors.As(err, &unexpected) {
		e := spotflowhttp.ErrorOf(unexpected.Payload)
		fmt.Println(e.StatusCode, e.Category, e.Attempts, e.Uncertain)
	}
	// Output: 503 retry 4 true
}
