// Package spotflowhttp gives an existing http.Client the error policy of
// Spotflow's payments API, as stackable http.RoundTrippers.
//
// Spotflow sorts every failure into four recovery categories: retry (with
// exponential backoff), don't retry (fix the input), escalate (a human must
// act) and treat as success (the resource already exists). It asks clients
// to wait for Retry-After on 429, to wait 30 s before retrying server_error,
// and to use idempotency keys so that a retry after a connection error never
// charges twice. The whole integration is one line:
//
//	client.Transport = spotflowhttp.NewTransport(client.Transport)
//
// NewTransport stacks four layers, outermost first:
//
//   - Transport annotates every result: ErrorOf(resp) returns an *Error with
//     the category, Spotflow's code, the attempts made and the idempotency
//     key, and escalations can be hooked (WithOnEscalate) or halt the
//     transport (WithHaltOnEscalate).
//   - IdempotencyTransport gives every POST and PATCH a key, the same on
//     every attempt of a call; optionally writes it into the body's
//     reference (WithReference) and resolves duplicate_reference by fetching
//     the existing resource (WithResolveDuplicates).
//   - RetryTransport retries only CategoryRetry, and only requests that are
//     safe to repeat, with backoff and jitter, Retry-After, the request's
//     deadline and a retry budget.
//   - RateLimitTransport makes every attempt pay: a 429's Retry-After holds
//     back all requests through the transport, X-RateLimit-Remaining 0 waits
//     for the reset, and a token bucket, an adaptive limiter or a Limiter of
//     your own (such as the redislimit module's, shared by many processes)
//     can pace requests.
//
// Like any RoundTripper, the stack returns err == nil whenever a response was
// obtained, with its body intact; ErrorOf tells what the response means, and
// WithErrors turns final failures into returned errors. A call that ends
// without certainty (a connection error after the request may have been
// sent, or a 500, 502, 503 or 504) has Error.Uncertain set and carries its
// key, so that the outcome can be resolved later with the same key.
//
// An Observer (WithObserver) sees every attempt, retry, stop, rate-limit wait
// and call end with the caller's context, for metrics and traces; the
// otelspotflow module records them as OpenTelemetry metrics. AttemptsOf
// tells the attempts of any response.
//
// Every layer is safe for concurrent use, usable alone, and configured by the
// same Option list. The stack makes one shallow copy of a request per call
// and starts no goroutines. Package spotflowtest simulates the Spotflow API
// for tests.
package spotflowhttp
