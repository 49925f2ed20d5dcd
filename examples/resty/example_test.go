package resty_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/spotflow-go/spotflowhttp"
	spotflowresty "github.com/spotflow-go/spotflowhttp/examples/resty"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A resty client whose transport is the Spotflow stack. The simulator
// resets the connection after the first attempt has created the payment;
// the transport retries with the same idempotency key, so the payment is
// made once, and resty sees only the final 201.
func Example() {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer sim.Close()

	// In production: spotflowresty.NewSpotflowClient(spotflowresty.DefaultServer, secretKey).
	// The short constant backoff only keeps the example quick.
	client := spotflowresty.NewSpotflowClient(sim.BaseURL(), sim.SecretKey(),
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) }))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var payment struct{ Reference, Status string }
	resp, err := client.R().
		SetContext(ctx).
		SetBody(map[string]any{
			"amount":   5000,
			"currency": "NGN",
			"customer": map[string]string{"email": "ada@example.com"},
			"metadata": map[string]string{"order_id": "1001"},
		}).
		SetResult(&payment).
		Post("/payments")
	if err != nil {
		panic(err) // no response; errors.As gives the *spotflowhttp.Error
	}
	if e := spotflowhttp.ErrorOf(resp.RawResponse); e != nil {
		panic(e)
	}
	fmt.Println(resp.StatusCode(), payment.Status, resp.Header().Get("Idempotent-Replayed"))
	fmt.Println("payments for order 1001:", sim.CountMetadata("order_id", "1001"))
	// Output:
	// 201 successful true
	// payments for order 1001: 1
}
