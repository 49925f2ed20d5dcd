// Command spotflow-mock serves the Spotflow API simulator of package
// spotflowtest on a port, so that the tests of an integration written in
// any language can start it, as stripe-mock is started for Stripe:
//
//	go install github.com/spotflow-go/spotflowhttp/cmd/spotflow-mock@latest
//	spotflow-mock -addr 127.0.0.1:0 -secret-key sk_test_mine
//
// The first line it prints on stdout is the base URL of the API,
// http://127.0.0.1:PORT/api/v1; when no secret key was given, the key it
// generated is the second. The API is spotflowtest's, answer for answer:
// payments, redirect checkouts, transfers, verify and transfer lookup,
// Idempotency-Key replays, duplicate references, 401 and 403, rate limits
// with Retry-After and X-RateLimit-*, injected faults (-faults), signed
// webhooks (-webhook-url) and a seed (-seed) that makes a run reproducible.
// GET /_mock/ledger returns, in JSON, what it did: the payments and
// transfers made, the tries of each idempotency key, the webhook
// deliveries. SIGINT or SIGTERM stops it cleanly with exit status 0.
//
// Run spotflow-mock -h for every flag.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, sigs))
}

// run is the command: it parses args, serves until the first signal on
// sigs, stops gracefully, and returns the exit status. A second signal cuts
// the graceful stop short.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	cfg, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "spotflow-mock:", err)
		return 2
	}
	generatedKey := cfg.SecretKey == ""
	if generatedKey {
		cfg.SecretKey = newSecretKey()
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "spotflow-mock: -addr %s: %v\n", cfg.Addr, err)
		return 2
	}
	s := spotflowtest.NewServer(append(cfg.options(), spotflowtest.WithListener(l))...)

	// os.Stdout is not buffered: each line is written, and readable
	// through a pipe, before the next step.
	fmt.Fprintln(stdout, s.BaseURL())
	if generatedKey {
		fmt.Fprintln(stdout, cfg.SecretKey)
	}
	if cfg.WebhookURL != "" && cfg.WebhookSecret == "" {
		fmt.Fprintln(stdout, s.WebhookSecret())
	}
	fmt.Fprintf(stderr, "spotflow-mock: serving %s (faults %s, rate limit %s, seed %d); ledger at %s%s/ledger\n",
		s.BaseURL(), cfg.FaultsSpec, cfg.Rate.Spec, cfg.Seed, s.URL, spotflowtest.ControlPrefix)

	sig := <-sigs
	fmt.Fprintf(stderr, "spotflow-mock: %v: stopping, waiting up to %v for the requests in flight\n", sig, cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.Shutdown(ctx); err != nil {
		fmt.Fprintln(stderr, "spotflow-mock: stopped before every request was answered:", err)
	}
	fmt.Fprintln(stderr, "spotflow-mock: stopped")
	return 0
}

// newSecretKey returns a random test key, so that no two runs accept the
// same key unless told to.
func newSecretKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return "sk_test_" + hex.EncodeToString(b)
}
