package spotflowtest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// A fault specification as a command line or an environment variable gives
// it: the flaky profile without its latency, and every first attempt
// committed and then cut off.
func ExampleParseFaults() {
	f, err := spotflowtest.ParseFaults("flaky,latency=0s,jitter=0s,schedule=reset_after")
	if err != nil {
		panic(err)
	}
	fmt.Println(f.ProxyError, f.ResetAfterCommit, f.Latency, f.Schedule)

	_, err = spotflowtest.ParseFaults("wild")
	fmt.Println(err)
	// Output:
	// 0.03 0.02 0s [ResetAfterCommit]
	// unknown fault profile "wild" (profiles: none, flaky, uncertain, slow, chaos; or NAME=VALUE items)
}

// The server on a listener of the caller's, read over HTTP through its
// ledger endpoint, and stopped gracefully, as cmd/spotflow-mock does.
func ExampleWithListener() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s := spotflowtest.NewServer(spotflowtest.WithListener(l))
	fmt.Println(s.URL == "http://"+l.Addr().String())

	body := `{"reference":"order-7","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	req, _ := http.NewRequest("POST", s.BaseURL()+"/payments", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.SecretKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	resp, err = http.Get(s.URL + spotflowtest.ControlPrefix + "/ledger")
	if err != nil {
		panic(err)
	}
	ledger, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(strings.Contains(string(ledger), `"reference":"order-7"`))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(s.Shutdown(ctx))
	// Output:
	// true
	// true
	// <nil>
}

// A key that may read but not create.
func ExampleWithRestrictedKey() {
	s := spotflowtest.NewServer(spotflowtest.WithRestrictedKey("sk_test_reader"))
	defer s.Close()

	body := `{"reference":"order-8","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"}}`
	req, _ := http.NewRequest("POST", s.BaseURL()+"/payments", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk_test_reader")
	resp, err := s.Client().Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, s.Ledger().Stats.Forbidden, len(s.Ledger().Payments))
	// Output:
	// 403 1 0
}
