// Package otel shows the two places an OpenTelemetry HTTP client span can
// go relative to spotflowhttp's transport, and what each records.
//
// Outside the stack, one span per call:
//
//	client := &http.Client{Transport: otelhttp.NewTransport(spotflowhttp.NewTransport(nil))}
//
// The span covers the whole call, retries and backoff waits included, and
// ends with the final response's status; it measures what the caller
// experienced. Every attempt sends the same traceparent header.
//
// Inside the stack, one span per attempt:
//
//	client := &http.Client{Transport: spotflowhttp.NewTransport(otelhttp.NewTransport(nil))}
//
// Each attempt is its own span with its own status (503, 503, 201) and its
// own traceparent, so the server's logs for each attempt link to it. With a
// parent span in the request's context, the attempts are its children.
// Waits between attempts are not in any span.
//
// Either way the transport's annotations survive otelhttp wrapping the
// response body: spotflowhttp.ErrorOf and spotflowhttp.IdempotencyKeyOf
// still work after the body has been read and closed.
//
// The package has no code of its own; see the examples and tests.
package otel
