package spotflowhttp_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"golang.org/x/time/rate"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// One client shared with another API: only Spotflow's host gets the policy.
// The other API's requests go to the base transport as they were made: no
// idempotency key, no retry of its 503, no pause learned from its 429s.
func ExampleWithHosts() {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	var otherHits int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits++
		fmt.Println("other API got key:", r.Header.Get("Idempotency-Key") != "")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer other.Close()

	spotflowHost := strings.TrimPrefix(sim.URL, "http://")
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithHosts(spotflowHost))}

	resp, err := client.Post(other.URL+"/orders", "application/json", strings.NewReader(`{}`))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("other API:", resp.StatusCode, "after", otherHits, "request")

	req, _ := http.NewRequest(http.MethodPost, sim.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err = client.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("Spotflow:", resp.StatusCode, "with a key:", spotflowhttp.IdempotencyKeyOf(resp) != "")
	// Output:
	// other API got key: false
	// other API: 503 after 1 request
	// Spotflow: 201 with a key: true
}

// A platform serving many merchants through one transport gives each
// merchant a limiter of its own. Here each merchant gets an in-process
// token bucket; with many processes, return a redislimit.Limiter per
// merchant instead, named after the merchant, so that every process serving
// that merchant shares it. What the stack learns from a merchant's answers
// (a 429 cool-down, a halt after a 401, the adaptive rate) is kept per
// merchant key already, without any option.
func ExampleWithLimiterFunc() {
	sim := spotflowtest.NewServer()
	defer sim.Close()

	var mu sync.Mutex
	limiters := map[string]*rate.Limiter{}
	paced := map[string]int{}
	limiterOf := func(req *http.Request) spotflowhttp.Limiter {
		merchant := req.Header.Get("X-Merchant-Id") // or a value of the request's context
		mu.Lock()
		defer mu.Unlock()
		l, ok := limiters[merchant]
		if !ok {
			l = rate.NewLimiter(5, 30) // this merchant's live-key limit
			limiters[merchant] = l
		}
		paced[merchant]++
		return l
	}
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithLimiterFunc(limiterOf))}

	for _, merchant := range []string{"m-1", "m-2", "m-1"} {
		req, _ := http.NewRequest(http.MethodGet, sim.BaseURL()+"/payments/verify?reference=none", nil)
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		req.Header.Set("X-Merchant-Id", merchant)
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
	}
	mu.Lock()
	fmt.Println("limiters:", len(limiters), "requests paced:", paced)
	mu.Unlock()
	// Output:
	// limiters: 2 requests paced: map[m-1:2 m-2:1]
}
