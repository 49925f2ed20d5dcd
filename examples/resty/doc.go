// Package resty shows the Spotflow error policy under a resty v2 client
// (github.com/go-resty/resty/v2): resty builds and decodes the requests,
// spotflowhttp's transport, installed with SetTransport, decides what to
// retry, when, and with which idempotency key.
//
// The one trap is a retrier above the stack. Every resty try is a new
// request, so a new call for the stack, which gives it a new idempotency
// key. When resty retries something the stack gave up on (say a 500 after
// the payment was created, which the stack would only retry after 30 s,
// while resty's SetTimeout allows 5), Spotflow sees a new payment each
// time: with SetRetryCount(2), three payments for one order. Either
//
//   - leave resty's retries off (its default, as [NewSpotflowClient] does)
//     and let the stack retry, with one key for all attempts, or
//   - put the key in the request's context with
//     spotflowhttp.ContextWithIdempotencyKey, derived from the order, so
//     that every resty try carries the same key and Spotflow answers a
//     repeat with the payment it already made.
//
// The tests show all three against spotflowtest. Bound a call with a
// context deadline (SetContext) rather than SetTimeout, which is
// http.Client.Timeout: when it fires, net/http replaces the stack's error
// with its own, and the key needed to resolve the outcome is lost.
package resty
