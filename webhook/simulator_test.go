package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
	"github.com/spotflow-go/spotflowhttp/webhook"
)

// TestHandlerReceivesSimulator has a Handler receive the simulator's
// webhooks, which an independent model of Spotflow signs, duplicates,
// reorders and sometimes signs with a wrong key: every event is processed
// once, with its reference and status, every forged try is refused and
// every other one accepted.
func TestHandlerReceivesSimulator(t *testing.T) {
	for _, header := range []string{spotflowtest.HeaderWebhookSignature, spotflowtest.HeaderSpotflowSignature} {
		t.Run(header, func(t *testing.T) {
			const payments = 30
			var (
				mu   sync.Mutex
				seen = map[string][]webhook.Event{} // by webhook-id
			)
			var h http.Handler
			receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
			defer receiver.Close()
			s := spotflowtest.NewServer(
				spotflowtest.WithSeed(7),
				spotflowtest.WithCheckout(spotflowtest.Checkout{FailureRate: 0.3}),
				spotflowtest.WithWebhooks(spotflowtest.Webhooks{
					URL:             receiver.URL,
					SignatureHeader: header,
					Duplicates:      0.5,
					OutOfOrder:      0.3,
					HoldBack:        20 * time.Millisecond,
					BadSignature:    0.3,
					Backoff:         5 * time.Millisecond,
					MaxBackoff:      20 * time.Millisecond,
					MaxAttempts:     20,
				}),
			)
			defer s.Close()
			var err error
			h, err = webhook.NewHandler(s.WebhookSecret(), func(_ context.Context, ev webhook.Event) error {
				mu.Lock()
				defer mu.Unlock()
				seen[ev.ID] = append(seen[ev.ID], ev)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}

			initializePayments(t, s, payments)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := s.WaitWebhooks(ctx); err != nil {
				t.Fatal(err)
			}

			events, bad := checkTries(t, s.Deliveries())
			if len(events) != payments || bad == 0 || len(s.Deliveries()) <= payments+bad {
				t.Fatalf("%d events, %d deliveries, %d forged; the test wants %d events, some duplicates and forgeries",
					len(events), len(s.Deliveries()), bad, payments)
			}
			mu.Lock()
			defer mu.Unlock()
			for id, ref := range events {
				evs := seen[id]
				if len(evs) != 1 {
					t.Errorf("event %s (%s) processed %d times, want once", id, ref, len(evs))
					continue
				}
				ev := evs[0]
				want := map[string]string{"payment_successful": "successful", "payment_failed": "failed"}[ev.Type]
				if ev.Reference != ref || want == "" || ev.Status != want {
					t.Errorf("event %s: %s %s %s; want reference %s and a matching status", id, ev.Type, ev.Reference, ev.Status, ref)
				}
			}
		})
	}
}

// initializePayments starts n checkouts on s, order-0 to order-n-1, each of
// which ends in a webhook.
func initializePayments(t *testing.T, s *spotflowtest.Server, n int) {
	for i := range n {
		body := fmt.Sprintf(`{"reference":"order-%d","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`, i)
		req, _ := http.NewRequest(http.MethodPost, s.BaseURL()+"/payments/initialize", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.SecretKey())
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("initialize: %d", resp.StatusCode)
		}
	}
}

// checkTries checks that the Handler refused every forged try in ds with a
// 403 and accepted every other one with a 200. It returns the events the
// simulator sent (webhook-id → reference) and the number of forged tries.
func checkTries(t *testing.T, ds []spotflowtest.Delivery) (events map[string]string, bad int) {
	events = map[string]string{}
	for _, d := range ds {
		events[d.ID] = d.Reference
		switch {
		case d.BadSignature && d.StatusCode != http.StatusForbidden:
			t.Errorf("forged try of %s answered %d, want 403", d.ID, d.StatusCode)
		case !d.BadSignature && d.StatusCode != http.StatusOK:
			t.Errorf("try %d of %s answered %d (%v), want 200", d.Attempt, d.ID, d.StatusCode, d.Err)
		}
		if d.BadSignature {
			bad++
		}
	}
	return events, bad
}
