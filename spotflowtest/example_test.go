package spotflowtest_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A payment created with a plain http.Client. The API is under BaseURL
// (URL + "/api/v1"), the key is SecretKey, and a payment needs amount,
// currency and customer.email.
func Example() {
	s := spotflowtest.NewServer()
	defer s.Close()

	body := `{"reference":"order-1001","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	req, err := http.NewRequest("POST", s.BaseURL()+"/payments", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.SecretKey())
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()

	var payment struct {
		Reference string `json:"reference"`
		Amount    int64  `json:"amount"`
		Currency  string `json:"currency"`
		Status    string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&payment); err != nil {
		panic(err)
	}
	fmt.Println(resp.StatusCode, payment.Reference, payment.Amount, payment.Currency, payment.Status)
	fmt.Println("charges:", s.Charges("order-1001"))
	// Output:
	// 201 order-1001 5000 NGN successful
	// charges: 1
}

// What the usual first mistakes are answered with.
func Example_mistakes() {
	s := spotflowtest.NewServer()
	defer s.Close()

	post := func(url, key, body string) {
		req, err := http.NewRequest("POST", url, strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var e struct{ Code, Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if e.Code == "" {
			e.Code = e.Message // a 400 carries its code in "message"
		}
		fmt.Println(resp.StatusCode, e.Code)
	}
	good := `{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	post(s.URL+"/payments", s.SecretKey(), good)                    // not under BaseURL
	post(s.BaseURL()+"/payments", "sk_live_mine", good)             // not the server's key
	post(s.BaseURL()+"/payments", s.SecretKey(), `{"amount":5000}`) // required fields missing
	// Output:
	// 404 not_found
	// 401 invalid_credentials
	// 400 missing_parameter
}

// A redirect checkout stays pending until its customer finishes, here two
// minutes later on a fake clock.
func ExampleWithCheckout() {
	clock := spotflowtest.NewClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	s := spotflowtest.NewServer(
		spotflowtest.WithClock(clock.Now),
		spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: 2 * time.Minute}),
	)
	defer s.Close()

	call := func(method, path, body string) {
		req, err := http.NewRequest(method, s.BaseURL()+path, strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.SecretKey())
		resp, err := s.Client().Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var p struct{ Status string }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		fmt.Println(method, path, resp.StatusCode, p.Status)
	}
	call("POST", "/payments/initialize", `{"reference":"order-7","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`)
	call("GET", "/payments/verify?reference=order-7", "")
	clock.Advance(2 * time.Minute)
	call("GET", "/payments/verify?reference=order-7", "")
	// Output:
	// POST /payments/initialize 200 pending
	// GET /payments/verify?reference=order-7 200 pending
	// GET /payments/verify?reference=order-7 200 successful
}

// The server sends a signed webhook when a checkout's customer pays. The
// receiver checks the Standard Webhooks signature: the base64 HMAC-SHA256,
// keyed with the secret's bytes, of id.timestamp.body.
func ExampleWithWebhooks() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	events := make(chan string, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "unreadable", http.StatusBadRequest)
			return
		}
		key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(r.Header.Get("webhook-signature")), []byte(want)) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev struct {
			Event string
			Data  struct{ Reference, Status string }
		}
		_ = json.Unmarshal(body, &ev)
		events <- fmt.Sprint(ev.Event, " ", ev.Data.Reference, " ", ev.Data.Status)
	}))
	defer receiver.Close()

	s := spotflowtest.NewServer(
		spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: 50 * time.Millisecond}),
		spotflowtest.WithWebhooks(spotflowtest.Webhooks{URL: receiver.URL, Secret: secret}),
	)
	defer s.Close()

	body := `{"reference":"order-8","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	req, err := http.NewRequest("POST", s.BaseURL()+"/payments/initialize", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.SecretKey())
	resp, err := s.Client().Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("initialize:", resp.StatusCode)
	fmt.Println("webhook:", <-events)
	// Output:
	// initialize: 200
	// webhook: payment_successful order-8 successful
}

// A payment is created, then verified by its reference; the ledger shows it
// was charged once.
func ExampleServer() {
	s := spotflowtest.NewServer()
	defer s.Close()

	send := func(method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, s.BaseURL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.SecretKey())
		if method == "POST" {
			req.Header.Set("Idempotency-Key", "order-1001")
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var obj map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&obj)
		return resp.StatusCode, obj
	}

	status, created := send("POST", "/payments",
		`{"reference":"order-1001","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"},"metadata":{"order_id":"1001"}}`)
	fmt.Println("create:", status, created["reference"], created["status"])

	status, verified := send("GET", "/payments/verify?reference=order-1001", "")
	fmt.Println("verify:", status, verified["amount"], verified["id"] == created["id"])

	fmt.Println("charges:", s.Charges("order-1001"))
	// Output:
	// create: 201 order-1001 successful
	// verify: 200 5000 true
	// charges: 1
}

// Failures can be scheduled per attempt: here every first attempt commits
// and then loses its connection, and the retry with the same
// Idempotency-Key is answered with the original success.
func ExampleFaults_schedule() {
	s := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer s.Close()

	body := `{"reference":"order-7","amount":100,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	for attempt := 1; attempt <= 2; attempt++ {
		req, _ := http.NewRequest("POST", s.BaseURL()+"/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.SecretKey())
		req.Header.Set("Idempotency-Key", "order-7")
		resp, err := s.Client().Do(req)
		if err != nil {
			fmt.Println("attempt", attempt, "failed: no response")
			continue
		}
		resp.Body.Close()
		fmt.Println("attempt", attempt, resp.StatusCode, "replayed:", resp.Header.Get("Idempotent-Replayed"))
	}
	fmt.Println("charges:", s.Charges("order-7"))
	// Output:
	// attempt 1 failed: no response
	// attempt 2 201 replayed: true
	// charges: 1
}

// A Clock makes waits instant and observable.
func ExampleClock() {
	c := spotflowtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	_ = c.Sleep(context.Background(), 30*time.Second)
	c.Advance(time.Second)
	fmt.Println(c.Now().Format(time.TimeOnly), c.Sleeps())
	// Output: 00:00:31 [30s]
}
