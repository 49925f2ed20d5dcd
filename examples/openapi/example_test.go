package openapi_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/examples/openapi"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A generated client with the Spotflow error policy in its transport. The
// simulator resets the connection after the first attempt has created the
// payment; the retry carries the same idempotency key, so the payment is
// charged once.
func Example() {
	srv := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer srv.Close()

	// In production: openapi.NewSpotflowClient(openapi.DefaultServer, secretKey).
	// The short constant backoff only keeps the example quick.
	client, err := openapi.NewSpotflowClient(srv.BaseURL(), srv.SecretKey(),
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) }),
		spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) {
			fmt.Printf("attempt %d: connection error: %t; retrying\n", ev.Attempt, ev.Err != nil)
		}))
	if err != nil {
		panic(err)
	}

	ref := "order-1042"
	resp, err := client.CreatePaymentWithResponse(context.Background(), openapi.PaymentRequest{
		Reference: &ref,
		Amount:    5000,
		Currency:  "NGN",
		Customer:  openapi.Customer{Email: "ada@example.com"},
	})
	if err != nil {
		panic(err) // no response at all; errors.As(err, new(*spotflowhttp.Error)) says more
	}
	if e := spotflowhttp.ErrorOf(resp.HTTPResponse); e != nil {
		panic(e)
	}
	fmt.Println(resp.StatusCode(), resp.JSON201.Reference, resp.JSON201.Status)
	fmt.Println("charged", srv.Charges(ref), "time(s)")
	// Output:
	// attempt 1: connection error: true; retrying
	// 201 order-1042 successful
	// charged 1 time(s)
}

// A failure is a response like any other for the generated client, which
// decodes its body; ErrorOf says what it means for the caller.
func Example_errorOf() {
	srv := spotflowtest.NewServer()
	defer srv.Close()

	client, err := openapi.NewSpotflowClient(srv.BaseURL(), "sk_test_revoked")
	if err != nil {
		panic(err)
	}
	resp, err := client.VerifyPaymentWithResponse(context.Background(), &openapi.VerifyPaymentParams{Reference: "order-1042"})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.StatusCode(), *resp.JSON401.Code, *resp.JSON401.Message)
	e := spotflowhttp.ErrorOf(resp.HTTPResponse)
	fmt.Println(e.Category, e.Attempts)
	// Output:
	// 401 invalid_credentials Invalid API key
	// escalate 1
}
