package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/spotflow-go/spotflowhttp/webhook"
)

// A Handler receives the same event twice, as a sender may deliver it, and
// processes it once.
func ExampleNewHandler() {
	// The secret Spotflow shows for the webhook URL (this one is made up).
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	h, err := webhook.NewHandler(secret, func(ctx context.Context, ev webhook.Event) error {
		fmt.Printf("%s: order %s is %s\n", ev.Type, ev.Reference, ev.Status)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	// Spotflow's side: sign the delivery with the Standard Webhooks
	// reference library, and send it.
	signer, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		log.Fatal(err)
	}
	const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	body := []byte(`{"event":"payment_successful","data":{"id":"pay_1","reference":"order-17","status":"successful","amount":5000,"currency":"NGN"}}`)
	for range 2 {
		now := time.Now()
		sig, err := signer.Sign(id, now, body)
		if err != nil {
			log.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		if err != nil {
			log.Fatal(err)
		}
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := srv.Client().Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	// Output:
	// payment_successful: order order-17 is successful
	// 200 OK
	// 200 OK
}
