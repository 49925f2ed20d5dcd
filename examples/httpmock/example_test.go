package httpmock_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jarcoal/httpmock"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// Spotflow answers 429 with Retry-After, then creates the payment. The fake
// clock of spotflowtest records the wait instead of sleeping.
func Example() {
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder(http.MethodPost, "https://api.spotflow.co/api/v1/payments",
		spotflowtest.RateLimitExceeded(2*time.Second).Then(spotflowtest.PaymentCreated("order-1042", 5000)))

	clock := spotflowtest.NewClock(time.Now())
	client := &http.Client{Transport: spotflowhttp.NewTransport(mock,
		spotflowhttp.WithClock(clock),
		spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) {
			fmt.Println("retry after", ev.StatusCode, ev.Code, "in", ev.Wait)
		}),
	)}

	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost,
		"https://api.spotflow.co/api/v1/payments",
		strings.NewReader(`{"reference":"order-1042","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()

	fmt.Println(resp.StatusCode, spotflowhttp.ErrorOf(resp) == nil)
	fmt.Println("requests:", mock.GetTotalCallCount(), "waited:", clock.Sleeps())
	// Output:
	// retry after 429 rate_limit_exceeded in 2s
	// 201 true
	// requests: 2 waited: [2s]
}
