// Package spotflowtest simulates the Spotflow payments API in process, in the
// spirit of net/http/httptest, so that code talking to Spotflow can be tested
// against rate limits, server errors, proxy errors, connection resets,
// outages and late outcomes without the network.
//
// [NewServer] starts a real HTTP server on 127.0.0.1 (or on the listener
// given to [WithListener]). It keeps a ledger of
// the payments and transfers it creates, enforces reference uniqueness and
// Idempotency-Key semantics the way the API does, and injects the failures
// described by [Faults], deterministically under a seed. Its inspection
// methods ([Server.Payments], [Server.Payment], [Server.Charges],
// [Server.CountMetadata], [Server.Stats], ...) let a test assert what the
// client really caused: for example that a retried payment was charged once.
//
// # Reaching the API
//
// The API lives under [Server.BaseURL], which is [Server].URL + "/api/v1":
// a request to URL + "/payments" is answered 404. Every request must carry
// the header "Authorization: Bearer " + [Server.SecretKey] (the key is
// [DefaultSecretKey] unless [WithSecretKey] sets another); any other key, or
// none, is answered 401 invalid_credentials; a create made with the key
// given to [WithRestrictedKey] is answered 403 forbidden. Any HTTP client works; the one
// from [Server.Client] has its idle connections closed by [Server.Close].
//
// # Endpoints and their fields
//
// Bodies are JSON objects. A request without a required field, or with one
// of the wrong type, is answered 400 with
// {"error":"Bad Request","message":"missing_parameter","status":400}. An
// amount is a JSON number, a positive whole number of minor units: 5000 is
// NGN 50.00; "5000" (a string), 0, -5 and 50.5 are refused.
//
//	POST /payments
//	    required: amount, currency, customer.email
//	    optional: reference (the server assigns "spf_..." if absent), metadata
//	    201 the payment, "status":"successful"
//	POST /payments/initialize (the redirect checkout)
//	    required: reference, amount, currency, customer.email
//	    optional: metadata
//	    200 the payment, "status":"pending", with "checkoutUrl" and
//	    "paymentCode"; its customer finishes later (see Checkout)
//	POST /transfers
//	    required: amount, currency
//	    optional: reference, destination, metadata
//	    201 the transfer, "status":"successful"; 400 insufficient_balance
//	    when the amount exceeds the balance (see WithBalance)
//	GET /payments/verify?reference=R
//	    200 the payment as it is now; 404 not_found
//	GET /transfers/reference/{R}
//	    200 the transfer; 404 not_found
//
// A create whose reference is already used by one of its kind is answered
// 400 duplicate_reference. The payment object is
// {"id","reference","amount","currency","status","metadata"}, plus
// "checkoutUrl" and "paymentCode" for a checkout; the transfer object is
// {"id","reference","amount","currency","status","destination","metadata"}.
// [Server] describes the Idempotency-Key rules and the order in which a
// request is handled.
//
// # Late outcomes and webhooks
//
// A redirect checkout is pending until its customer finishes, on the
// server's clock ([WithCheckout], [WithClock]); only verify and the webhooks
// tell how it ended. [WithWebhooks] makes the server send Standard Webhooks
// for every payment and transfer event, signed with its own secret
// ([Server.WebhookSecret]), at least once, with optional duplicates,
// reordering, redelivery and forged signatures; [Server.Deliveries] records
// every try and [Server.WaitWebhooks] waits until they are done.
//
// # Tests in other languages
//
// Command cmd/spotflow-mock serves this simulator on a port for test suites
// in any language. What such a test reads with the inspection methods it
// reads over HTTP under [ControlPrefix], outside the API and without a key:
// GET /_mock/ledger returns the [Ledger] in JSON. [ParseFaults] reads a
// fault specification such as "flaky" or "reset_after=0.05,latency=20ms",
// and [Server.Shutdown] stops a server gracefully.
//
// # Mocking the transport instead
//
// For tests that mock the transport, [RateLimitExceeded],
// [ConnectionReset], [ServerError] and their siblings return
// [github.com/jarcoal/httpmock] responders that produce the same bodies.
//
// The package is an independent model of the server: it shares no code with
// the client it is used to test, so it does not share the client's mistakes.
package spotflowtest
