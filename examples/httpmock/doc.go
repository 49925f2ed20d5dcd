// Package httpmock shows spotflowhttp's transport on top of an httpmock
// transport, with the responders of package spotflowtest playing Spotflow:
//
//	mock := httpmock.NewMockTransport()
//	mock.RegisterResponder(http.MethodPost, "https://api.spotflow.co/api/v1/payments",
//		spotflowtest.RateLimitExceeded(2*time.Second).Then(spotflowtest.PaymentCreated("ord-1", 5000)))
//	client := &http.Client{Transport: spotflowhttp.NewTransport(mock, spotflowhttp.WithClock(fake))}
//
// The mock replaces the network, below the retry, idempotency and
// rate-limit layers, so a test sees every attempt and can check what the
// policy did with each answer. A fake spotflowhttp.Clock makes the waits
// (Retry-After, backoff) instant and observable.
//
// The package has no code of its own; see the examples and tests.
package httpmock
