package redislimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp/webhook"
)

// DefaultLease is how long a WebhookDedup claim lasts unless committed or
// released first.
const DefaultLease = time.Minute

// WebhookDedup is a [webhook.Dedup] in Redis, for many replicas that
// receive Spotflow's webhooks at one URL: an event delivered twice, to two
// replicas, is processed by one of them. Give it to every replica's
// handler with webhook.WithDedup.
//
// A claim is a key holding the claim's token, which lasts a lease
// ([WithDedupLease]), so that a replica that dies while processing an
// event does not block it for good: until the lease ends, deliveries of
// that id are answered 503 and delivered again later. A claim held
// elsewhere is not waited for: Claim returns [webhook.InFlight] at once.
// A processed id is remembered for the retention ([WithDedupRetention]).
//
// While Redis cannot be reached, Claim fails and the handler answers 503,
// so the sender delivers again later: processing without the shared record
// could process an event twice. Each method is one round trip, with its
// context as the only bound; give the client ContextTimeoutEnabled: true,
// as for a Limiter.
//
// A WebhookDedup is safe for concurrent use by multiple goroutines.
type WebhookDedup struct {
	rdb       redis.UniversalClient
	prefix    string
	lease     time.Duration
	retention time.Duration
}

var _ webhook.Dedup = (*WebhookDedup)(nil)

// WebhookDedupOption configures a [WebhookDedup].
type WebhookDedupOption func(*WebhookDedup)

// WithDedupLease sets how long a claim lasts if the replica holding it
// neither commits nor releases it, such as when the process dies. Make it
// longer than your webhook function ever runs: a delivery that comes after
// the lease, while the function still runs, processes the event again. The
// default is [DefaultLease]. NewWebhookDedup returns an error if d is
// under a millisecond.
func WithDedupLease(d time.Duration) WebhookDedupOption {
	return func(w *WebhookDedup) { w.lease = d }
}

// WithDedupRetention sets how long a processed webhook-id is remembered.
// The default is webhook.DefaultRetention, which covers a sender's retries
// of one event. NewWebhookDedup returns an error if d is under a
// millisecond.
func WithDedupRetention(d time.Duration) WebhookDedupOption {
	return func(w *WebhookDedup) { w.retention = d }
}

// NewWebhookDedup returns the store named name in rdb's Redis: every
// WebhookDedup with the same Redis and name shares its ids. It keeps each
// id in the key "spotflowhttp:{name}:webhook:<id>". It returns an error if
// rdb is nil, name is empty or an option was given an invalid value; it
// does not dial Redis.
func NewWebhookDedup(rdb redis.UniversalClient, name string, opts ...WebhookDedupOption) (*WebhookDedup, error) {
	switch {
	case isNil(rdb):
		return nil, errors.New("redislimit: the Redis client is nil")
	case name == "":
		return nil, errors.New("redislimit: the webhook dedup's name is empty")
	}
	w := &WebhookDedup{
		rdb:       rdb,
		prefix:    "spotflowhttp:{" + name + "}:webhook:",
		lease:     DefaultLease,
		retention: webhook.DefaultRetention,
	}
	for _, o := range opts {
		if o != nil {
			o(w)
		}
	}
	// Redis keeps expiries in milliseconds; PX 0 is an error.
	switch {
	case w.lease < time.Millisecond:
		return nil, fmt.Errorf("redislimit: WithDedupLease(%v): the lease must be at least a millisecond", w.lease)
	case w.retention < time.Millisecond:
		return nil, fmt.Errorf("redislimit: WithDedupRetention(%v): the retention must be at least a millisecond", w.retention)
	}
	return w, nil
}

// processed is the value of a committed id; a claim holds its token, 32
// hex digits, which never equals it.
const processed = "processed"

// claimDedupScript: ARGV token, lease in ms. 1 claimed, 2 processed, 3 in
// flight.
var claimDedupScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return 1
end
if v == 'processed' then return 2 end
return 3`)

// releaseDedupScript: ARGV token. Only the claim's own token frees it.
var releaseDedupScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)

// Claim implements [webhook.Dedup].
func (w *WebhookDedup) Claim(ctx context.Context, id string) (webhook.ClaimState, string, error) {
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	n, err := claimDedupScript.Run(ctx, w.rdb, []string{w.prefix + id}, token, w.lease.Milliseconds()).Int()
	if err != nil {
		return 0, "", fmt.Errorf("redislimit: webhook dedup: %w", err)
	}
	switch n {
	case 1:
		return webhook.Claimed, token, nil
	case 2:
		return webhook.Processed, "", nil
	}
	return webhook.InFlight, "", nil
}

// Commit implements [webhook.Dedup]. It records id as processed even if
// the claim's lease has ended and another delivery claimed it since: the
// event was processed, and that delivery's Release then frees nothing.
func (w *WebhookDedup) Commit(ctx context.Context, id, _ string) error {
	if err := w.rdb.Set(ctx, w.prefix+id, processed, w.retention).Err(); err != nil {
		return fmt.Errorf("redislimit: webhook dedup: %w", err)
	}
	return nil
}

// Release implements [webhook.Dedup].
func (w *WebhookDedup) Release(ctx context.Context, id, token string) error {
	if err := releaseDedupScript.Run(ctx, w.rdb, []string{w.prefix + id}, token).Err(); err != nil {
		return fmt.Errorf("redislimit: webhook dedup: %w", err)
	}
	return nil
}
