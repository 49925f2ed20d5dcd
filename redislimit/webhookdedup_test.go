package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spotflow-go/spotflowhttp/redislimit"
	"github.com/spotflow-go/spotflowhttp/webhook"
	"github.com/spotflow-go/spotflowhttp/webhook/deduptest"
)

var dedups atomic.Int64

// newDedup is a WebhookDedup under a name no other test uses.
func newDedup(t *testing.T, rdb redis.UniversalClient, opts ...redislimit.WebhookDedupOption) (*redislimit.WebhookDedup, string) {
	t.Helper()
	name := fmt.Sprintf("dedup-%d", dedups.Add(1))
	d, err := redislimit.NewWebhookDedup(rdb, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d, name
}

func TestWebhookDedup(t *testing.T) {
	s := needRedis(t)
	deduptest.Run(t, func(t *testing.T) webhook.Dedup {
		d, _ := newDedup(t, s.client(t))
		return d
	})
}

func TestNewWebhookDedupInvalid(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	var nilClient *redis.Client
	for name, f := range map[string]func() (*redislimit.WebhookDedup, error){
		"nil client":        func() (*redislimit.WebhookDedup, error) { return redislimit.NewWebhookDedup(nil, "x") },
		"nil *redis.Client": func() (*redislimit.WebhookDedup, error) { return redislimit.NewWebhookDedup(nilClient, "x") },
		"empty name":        func() (*redislimit.WebhookDedup, error) { return redislimit.NewWebhookDedup(rdb, "") },
		"zero lease": func() (*redislimit.WebhookDedup, error) {
			return redislimit.NewWebhookDedup(rdb, "x", redislimit.WithDedupLease(0))
		},
		"sub-ms retention": func() (*redislimit.WebhookDedup, error) {
			return redislimit.NewWebhookDedup(rdb, "x", redislimit.WithDedupRetention(time.Microsecond))
		},
		"negative retention": func() (*redislimit.WebhookDedup, error) {
			return redislimit.NewWebhookDedup(rdb, "x", redislimit.WithDedupRetention(-time.Hour))
		},
	} {
		if d, err := f(); err == nil || d != nil {
			t.Errorf("%s: NewWebhookDedup = %v, %v; want an error", name, d, err)
		}
	}
}

// TestWebhookDedupExpiry reads the expiries Redis was given: a claim lasts
// the lease, a processed id the retention.
func TestWebhookDedupExpiry(t *testing.T) {
	rdb := needRedis(t).client(t)
	ctx := context.Background()
	d, name := newDedup(t, rdb, redislimit.WithDedupLease(30*time.Second), redislimit.WithDedupRetention(2*time.Hour))
	key := "spotflowhttp:{" + name + "}:webhook:msg_1"
	ttl := func(min, max time.Duration) {
		t.Helper()
		if got := rdb.PTTL(ctx, key).Val(); got < min || got > max {
			t.Errorf("%s expires in %v, want within [%v, %v]", key, got, min, max)
		}
	}
	_, tok, err := d.Claim(ctx, "msg_1")
	if err != nil {
		t.Fatal(err)
	}
	ttl(20*time.Second, 30*time.Second)
	if err := d.Commit(ctx, "msg_1", tok); err != nil {
		t.Fatal(err)
	}
	ttl(2*time.Hour-10*time.Second, 2*time.Hour)
}

// TestWebhookDedupLeaseEnds: the claim of a replica that died while
// processing (it neither committed nor released) frees itself when its
// lease ends. Real time, because the lease is Redis's own expiry.
func TestWebhookDedupLeaseEnds(t *testing.T) {
	ctx := context.Background()
	d, _ := newDedup(t, needRedis(t).client(t), redislimit.WithDedupLease(50*time.Millisecond))
	if s, _, err := d.Claim(ctx, "msg_1"); s != webhook.Claimed || err != nil {
		t.Fatalf("Claim = %v, %v", s, err)
	}
	start := time.Now()
	for {
		s, _, err := d.Claim(ctx, "msg_1")
		if err != nil {
			t.Fatal(err)
		}
		if s == webhook.Claimed {
			break
		}
		if s != webhook.InFlight || time.Since(start) > 5*time.Second {
			t.Fatalf("Claim %v after %v; want InFlight until the lease ends, then Claimed", s, time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if held := time.Since(start); held < 40*time.Millisecond {
		t.Errorf("the claim ended after %v, before its 50 ms lease", held)
	}
}

// The secret of these tests, in the form Spotflow shows it.
const webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

var webhookTime = time.Unix(1_700_000_000, 0)

// delivery is a webhook delivery signed with webhookSecret, by the
// Standard Webhooks reference library, at webhookTime.
func delivery(t *testing.T, id string) *http.Request {
	t.Helper()
	body := `{"event":"payment_successful","data":{"reference":"order-17","status":"successful"}}`
	signer, err := standardwebhooks.NewWebhook(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign(id, webhookTime, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/webhooks", strings.NewReader(body))
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", strconv.FormatInt(webhookTime.Unix(), 10))
	r.Header.Set("webhook-signature", sig)
	return r
}

// replica is one process's webhook handler, with its own Redis client.
func replica(t *testing.T, s *redisServer, name string, fn func(context.Context, webhook.Event) error) *webhook.Handler {
	t.Helper()
	d, err := redislimit.NewWebhookDedup(s.client(t), name, redislimit.WithDedupLease(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	h, err := webhook.NewHandler(webhookSecret, fn, webhook.WithDedup(d), webhook.WithClock(func() time.Time { return webhookTime }))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestWebhookReplicas: two replicas share one WebhookDedup; while the first
// delivery of an event is being processed, 19 more, spread over both, are
// answered 503 without processing it. If the first fails, the next
// redelivery processes it; once processed, it is not processed again.
func TestWebhookReplicas(t *testing.T) {
	s := needRedis(t)
	for _, failFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("first fails %v", failFirst), func(t *testing.T) {
			name := fmt.Sprintf("dedup-%d", dedups.Add(1))
			entered, release := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			fn := func(context.Context, webhook.Event) error {
				if calls.Add(1) == 1 {
					close(entered)
					<-release
					if failFirst {
						return errors.New("database unavailable")
					}
				}
				return nil
			}
			replicas := []*webhook.Handler{replica(t, s, name, fn), replica(t, s, name, fn)}
			serve := func(i int) *httptest.ResponseRecorder {
				w := httptest.NewRecorder()
				replicas[i%2].ServeHTTP(w, delivery(t, "msg_1"))
				return w
			}

			first := make(chan int)
			go func() { first <- serve(0).Code }()
			<-entered
			var wg sync.WaitGroup
			for i := 1; i < 20; i++ {
				wg.Go(func() {
					if w := serve(i); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
						t.Errorf("duplicate %d while the first is processed: status %d, Retry-After %q; want 503 with one",
							i, w.Code, w.Header().Get("Retry-After"))
					}
				})
			}
			wg.Wait()
			close(release)
			want, calledAgain := 200, int32(1)
			if failFirst {
				want, calledAgain = 500, 2
			}
			if code := <-first; code != want {
				t.Errorf("first delivery: status %d, want %d", code, want)
			}
			for i := range 2 {
				if w := serve(i + 1); w.Code != 200 {
					t.Errorf("redelivery %d: status %d", i+1, w.Code)
				}
			}
			if n := calls.Load(); n != calledAgain {
				t.Errorf("function called %d times, want %d", n, calledAgain)
			}
		})
	}
}

// TestWebhookDedupRedisDown: without Redis, a delivery is answered 503 and
// not processed, since it could not be checked against the other replicas.
func TestWebhookDedupRedisDown(t *testing.T) {
	s := ownRedis(t)
	var calls atomic.Int32
	h := replica(t, s, "dedup-down", func(context.Context, webhook.Event) error { calls.Add(1); return nil })
	s.kill()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, delivery(t, "msg_1"))
	if w.Code != http.StatusServiceUnavailable || calls.Load() != 0 {
		t.Errorf("status %d, %d calls; want 503 and none", w.Code, calls.Load())
	}
}
