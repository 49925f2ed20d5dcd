// Package webhook receives Spotflow's webhooks: it verifies each delivery,
// drops the ones already processed, and hands every new event once to a
// function of yours.
//
// Spotflow signs its webhooks as the Standard Webhooks specification says
// (https://www.standardwebhooks.com): the headers webhook-id,
// webhook-timestamp and webhook-signature (Spotflow's documents also name it
// x-spotflow-signature; either is accepted), the signature being
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" under a secret written
// "whsec_<base64>". The signature is checked by the specification's
// reference library, github.com/standard-webhooks/standard-webhooks/libraries;
// the timestamp is checked here instead, against [WithTolerance] and
// [WithClock], since the library's check is fixed to 5 minutes of
// time.Now.
//
//	h, err := webhook.NewHandler(os.Getenv("SPOTFLOW_WEBHOOK_SECRET"),
//		func(ctx context.Context, ev webhook.Event) error {
//			return orders.Settle(ctx, ev.Reference, ev.Status)
//		})
//	if err != nil {
//		return err
//	}
//	http.Handle("POST /webhooks/spotflow", h)
//
// # Answers
//
// Spotflow delivers each event at least once and delivers it again until it
// gets a 2xx answer. A [Handler] answers:
//
//   - 200 when the function returned nil, and when the webhook-id was
//     processed before (the function is not called again);
//   - 500 when the function returned an error: the id is not remembered, so
//     the redelivery is processed;
//   - 503 with Retry-After when another delivery of the same id is being
//     processed elsewhere and could not be waited for (see [Dedup]), or
//     when the [Dedup] store fails: the sender tries again later;
//   - 400 for missing or malformed webhook headers, and for a verified body
//     that is not a JSON object; 403 for a signature that matches none of the
//     secrets and for a timestamp outside the tolerance; 405 for a method
//     other than POST; 413 for a body over the maximum.
//
// The function is called only for a verified delivery within the tolerance
// whose body is a JSON object. Answers and log lines never contain a
// secret or an expected signature.
//
// # Duplicates
//
// The webhook-id is the same on every delivery of one event, so a Handler
// remembers the ids it processed, in memory by default ([MemoryDedup]), or
// in a store shared by many replicas given to [WithDedup] (the redislimit
// module has one in Redis). Each delivery first claims its id; a second
// delivery of an id that is being processed waits for the first in memory,
// and is then answered as a duplicate if the first succeeded, or processes
// the event itself if the first failed. No delivery is answered 2xx before
// the event was processed, so an event is never lost to deduplication.
//
// Deduplication is not forever: ids are remembered for a retention period
// ([DefaultRetention]). It cannot rest on the timestamp tolerance, because
// a sender signs every attempt afresh with the time of the attempt, so a
// redelivery hours after the first delivery passes the timestamp check.
// The function should still be idempotent (settling an order twice must be
// harmless), as Spotflow asks of every receiver.
package webhook
