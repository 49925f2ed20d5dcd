// Package spotflowhttp gives an existing [http.Client] the error policy of
// Spotflow's payments API, as stackable layers, each an [http.RoundTripper].
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
// [NewTransport] stacks four layers, outermost first:
//
//   - [Transport] annotates every result: [ErrorOf] returns an [*Error] with
//     the category, Spotflow's code, the attempts made and the idempotency
//     key, and escalations can be hooked ([WithOnEscalate]) or halt the
//     credential that caused them ([WithHaltOnEscalate]).
//   - [IdempotencyTransport] gives every POST and PATCH a key, the same on
//     every attempt of a call; optionally writes it into the body's
//     reference ([WithReference]) and resolves duplicate_reference by
//     fetching the existing resource ([WithResolveDuplicates]).
//   - [RetryTransport] retries only [CategoryRetry], and only requests that
//     are safe to repeat, with backoff and jitter, Retry-After, the request's
//     deadline and a retry budget.
//   - [RateLimitTransport] makes every attempt pay: a 429's Retry-After holds
//     back the requests with the same credential to the same host,
//     X-RateLimit-Remaining 0 waits for the reset, and a token bucket, an
//     adaptive limiter or a [Limiter] of your own (such as the redislimit
//     module's, shared by many processes) can pace requests.
//
// Like any RoundTripper, the stack returns err == nil whenever a response was
// obtained, with its body intact; [ErrorOf] tells what the response means,
// and [WithErrors] turns final failures into returned errors. A call that
// ends without certainty (a connection error after the request may have
// been sent, or a 500, 502, 503 or 504) has [Error.Uncertain] set and
// carries its key, so that the outcome can be resolved later with the same
// key ([ContextWithIdempotencyKey]).
//
// An [Observer] ([WithObserver]) sees every attempt, retry, stop, rate-limit
// wait and call end with the caller's context, for metrics and traces; the
// otelspotflow module records them as OpenTelemetry metrics. [AttemptsOf]
// tells the attempts of any response.
//
// A [Journal] ([WithJournal]) keeps every keyed create durably from before
// its first attempt until its outcome is certain, so that an uncertain
// outcome survives Client.Timeout and a crash; a [Reconciler] settles what
// it holds from webhooks, the verify endpoint or a re-send with the same
// key. Package boltjournal keeps a journal in a file, the redislimit module
// in Redis.
//
// Every layer is safe for concurrent use by multiple goroutines, usable
// alone, and configured by the same [Option] list; a layer ignores the
// options it does not read, and each option's documentation says which
// layers read it. Invalid option values (a negative delay, a burst of 0 with
// a finite rate) panic when the option is made, naming it, as
// [time.NewTicker] does: they are programming errors, not conditions to
// handle at run time.
//
// The caller's request is never modified. The stack works on a shallow copy
// of it, made once per call, and makes one more for each retry; a header is
// copied only when a layer sets one (the idempotency key). The transports
// start no goroutines. Package spotflowtest simulates the Spotflow API for
// tests.
package spotflowhttp
