package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// The environment variables that may carry the secrets instead of the
// flags, which land in shell history and in ps. A flag wins over its
// variable.
const (
	envSecretKey     = "SPOTFLOW_MOCK_SECRET_KEY"
	envWebhookSecret = "SPOTFLOW_MOCK_WEBHOOK_SECRET"
)

// config is one run of the mock, as the command line describes it.
type config struct {
	Addr            string
	SecretKey       string // "" until generated
	RestrictedKey   string
	Seed            int64
	Faults          spotflowtest.Faults
	FaultsSpec      string
	Rate            rateLimit
	RateHeaders     bool
	Balance         int64
	WebhookURL      string
	WebhookSecret   string
	Webhooks        spotflowtest.Webhooks // from -webhook-faults; URL and Secret set apart
	CheckoutDelay   time.Duration
	CheckoutFails   float64
	ShutdownTimeout time.Duration
}

// rateLimit is the server's token bucket; PerSecond 0 means none.
type rateLimit struct {
	Spec      string
	PerSecond float64
	Burst     int
}

// The rate limits Spotflow documents for its keys.
var ratePresets = map[string]rateLimit{
	"off":  {Spec: "off"},
	"test": {Spec: "test", PerSecond: 1, Burst: 10}, // 60 a minute, bursts of 10
	"live": {Spec: "live", PerSecond: 5, Burst: 30}, // 300 a minute, bursts of 30
}

const usageHead = `spotflow-mock serves the Spotflow API simulator (package spotflowtest) on a
port, for the tests of an integration written in any language.

Output: the first line on stdout is the base URL of the API,
http://HOST:PORT/api/v1, with the port it bound. When no secret key was
given (-secret-key or $SPOTFLOW_MOCK_SECRET_KEY), the key it generated, the
only one it accepts, is the next line (sk_test_...); when webhooks are on
and no secret was given (-webhook-secret or $SPOTFLOW_MOCK_WEBHOOK_SECRET),
the secret it signs them with is the next line after that (whsec_...).
Diagnostics go to stderr.

API (Authorization: Bearer KEY on every request; see package spotflowtest):
  POST /api/v1/payments                         201 a payment
  POST /api/v1/payments/initialize              200 a pending redirect checkout
  POST /api/v1/transfers                        201 a transfer
  GET  /api/v1/payments/verify?reference=R      200 the payment, 404
  GET  /api/v1/transfers/reference/R            200 the transfer, 404
Idempotency-Key replays the first success ("Idempotent-Replayed: true");
a reference used twice is 400 duplicate_reference; a wrong key is 401.

Control, outside the API, no key (for a test to assert on):
  GET  /_mock/ledger                            the ledger in JSON: payments,
                                                transfers, webhook deliveries,
                                                arrivals by key, balance, stats
  POST /_mock/checkouts/R?outcome=successful|failed   finish a checkout
  POST /_mock/outage?duration=5s                start an outage (503s)
  POST /_mock/webhooks/wait?timeout=10s         204 once every webhook so far
                                                is delivered or given up

SIGINT or SIGTERM stops it cleanly: no new connections, the requests in
flight answered (up to -shutdown-timeout), webhooks stopped, exit status 0.
Bad usage or input exits 2 with one line on stderr.

Usage:
  spotflow-mock [flags]

Flags:
`

// parseFlags reads the command line and the environment into a config.
// It returns flag.ErrHelp for -h, and an error naming the flag for
// anything else it refuses.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	cfg := config{}
	var faults, rate, checkoutFails, webhookFaults string
	var burst int
	fs := flag.NewFlagSet("spotflow-mock", flag.ContinueOnError)
	// The flag package's own messages are replaced by one line (see run);
	// -h prints the usage to stderr.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "`HOST:PORT` to listen on; port 0 picks a free one")
	fs.StringVar(&cfg.SecretKey, "secret-key", "", "the secret `KEY` the API accepts (default $"+envSecretKey+", else one generated and printed on the second line)")
	fs.StringVar(&cfg.RestrictedKey, "restricted-key", "", "a second `KEY`, without the permission to create: verify and transfer lookups are served, creates get 403 forbidden (default none)")
	fs.Int64Var(&cfg.Seed, "seed", 1, "`N` seeds the fault decisions, ids, request markers and checkout outcomes: the same seed and the same requests give the same answers")
	fs.StringVar(&faults, "faults", "none", "injected failures, a `SPEC`: a profile ("+strings.Join(spotflowtest.FaultProfiles(), ", ")+
		") or NAME=VALUE items, comma-separated, such as 'reset_after=0.05,server_error_before=0.02,latency=20ms' (names: proxy_error, server_error_before, reset_before, server_error_after, reset_after, latency, jitter, reads, outage=START+LENGTH, schedule=F:F)")
	fs.StringVar(&rate, "rate-limit", "off", "rate `LIMIT`: off, test (60/min, burst 10), live (300/min, burst 30), or N/s, N/min; a 429 carries Retry-After, every answer X-RateLimit-*")
	fs.IntVar(&burst, "burst", 0, "burst of the rate limit, in `N` requests (default the preset's, or one second of N/s, at least 1)")
	fs.BoolVar(&cfg.RateHeaders, "rate-limit-headers", true, "send X-RateLimit-Limit, -Remaining and -Reset when there is a rate limit")
	fs.Int64Var(&cfg.Balance, "balance", spotflowtest.DefaultBalance, "merchant balance for transfers, in `MINOR` units")
	fs.StringVar(&cfg.WebhookURL, "webhook-url", "", "`URL` to send signed webhooks to (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature); default none")
	fs.StringVar(&cfg.WebhookSecret, "webhook-secret", "", "`SECRET` (whsec_...) that signs the webhooks (default $"+envWebhookSecret+", else one derived from -seed and printed)")
	fs.StringVar(&webhookFaults, "webhook-faults", "", "how the webhooks misbehave and are retried, a `SPEC` of NAME=VALUE items, comma-separated, such as 'duplicates=0.1,out_of_order=0.2,bad_signature=0.05' (names: duplicates, out_of_order, bad_signature (shares in [0,1]); delay, hold_back, backoff, max_backoff, timeout (durations); max_attempts (a count)); default none, every event delivered once, in order, well signed")
	fs.DurationVar(&cfg.CheckoutDelay, "checkout-delay", 0, "how long a redirect checkout's customer takes to finish; POST /_mock/checkouts/R finishes one at once")
	fs.StringVar(&checkoutFails, "checkout-failures", "0", "`SHARE` of redirect checkouts that fail, in [0,1]")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 5*time.Second, "on SIGINT or SIGTERM, how long the requests in flight may take to finish")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprint(stderr, usageHead)
			fs.PrintDefaults()
			return cfg, err
		}
		return cfg, fmt.Errorf("%w (spotflow-mock -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q: spotflow-mock takes flags only", fs.Arg(0))
	}
	if cfg.SecretKey == "" {
		cfg.SecretKey = getenv(envSecretKey)
	}
	if cfg.WebhookSecret == "" {
		cfg.WebhookSecret = getenv(envWebhookSecret)
	}
	if err := cfg.check(faults, rate, burst, checkoutFails); err != nil {
		return cfg, err
	}
	return cfg, cfg.parseWebhookFaults(webhookFaults)
}

// check parses the flags that need it and refuses values out of range.
func (cfg *config) check(faults, rate string, burst int, checkoutFails string) error {
	var err error
	if cfg.Faults, err = spotflowtest.ParseFaults(faults); err != nil {
		return fmt.Errorf("-faults: %w", err)
	}
	cfg.FaultsSpec = faults
	if cfg.Rate, err = parseRateLimit(rate, burst); err != nil {
		return fmt.Errorf("-rate-limit %q: %w", rate, err)
	}
	if burst < 0 {
		return errors.New("-burst must be at least 1")
	}
	if cfg.Balance < 0 {
		return errors.New("-balance must not be negative")
	}
	if cfg.CheckoutDelay < 0 {
		return errors.New("-checkout-delay must not be negative")
	}
	if cfg.CheckoutFails, err = strconv.ParseFloat(checkoutFails, 64); err != nil || cfg.CheckoutFails < 0 || cfg.CheckoutFails > 1 {
		return fmt.Errorf("-checkout-failures %q: want a share in [0,1]", checkoutFails)
	}
	if cfg.ShutdownTimeout <= 0 {
		return errors.New("-shutdown-timeout must be positive")
	}
	if cfg.RestrictedKey != "" && cfg.RestrictedKey == cfg.SecretKey {
		return errors.New("-restricted-key must differ from the secret key")
	}
	return cfg.checkWebhooks()
}

func (cfg *config) checkWebhooks() error {
	if cfg.WebhookURL == "" {
		if cfg.WebhookSecret != "" {
			return errors.New("-webhook-secret needs -webhook-url")
		}
		return nil
	}
	u, err := url.Parse(cfg.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-webhook-url %q: want an http:// or https:// URL", cfg.WebhookURL)
	}
	if err := (spotflowtest.Webhooks{Secret: cfg.WebhookSecret}).Validate(); err != nil {
		// Never print the secret itself.
		return errors.New("-webhook-secret: want \"whsec_\" followed by base64")
	}
	return nil
}

// parseWebhookFaults reads -webhook-faults into cfg.Webhooks.
func (cfg *config) parseWebhookFaults(spec string) error {
	if spec == "" {
		return nil
	}
	if cfg.WebhookURL == "" {
		return errors.New("-webhook-faults needs -webhook-url")
	}
	w := &cfg.Webhooks
	shares := map[string]*float64{"duplicates": &w.Duplicates, "out_of_order": &w.OutOfOrder, "bad_signature": &w.BadSignature}
	durations := map[string]*time.Duration{"delay": &w.Delay, "hold_back": &w.HoldBack, "backoff": &w.Backoff, "max_backoff": &w.MaxBackoff, "timeout": &w.Timeout}
	for item := range strings.SplitSeq(spec, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(item), "=")
		var err error
		if p, ok := shares[name]; ok {
			*p, err = strconv.ParseFloat(value, 64)
		} else if d, ok := durations[name]; ok {
			*d, err = time.ParseDuration(value)
		} else if name == "max_attempts" {
			w.MaxAttempts, err = strconv.Atoi(value)
		} else {
			return fmt.Errorf("-webhook-faults: unknown name %q (names: duplicates, out_of_order, bad_signature, delay, hold_back, backoff, max_backoff, timeout, max_attempts)", name)
		}
		if err != nil {
			return fmt.Errorf("-webhook-faults: %q: not a number or a duration", item)
		}
	}
	if err := w.Validate(); err != nil { // the secret is checked apart: w has none
		return fmt.Errorf("-webhook-faults: %w", err)
	}
	return nil
}

// parseRateLimit reads off, test, live, N/s or N/min. A burst of 0 takes
// the preset's, or one second of requests, at least 1.
func parseRateLimit(spec string, burst int) (rateLimit, error) {
	if r, ok := ratePresets[spec]; ok {
		if burst > 0 && r.PerSecond > 0 {
			r.Burst = burst
		}
		return r, nil
	}
	n, unit, ok := strings.Cut(spec, "/")
	v, err := strconv.ParseFloat(n, 64)
	if !ok || err != nil || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return rateLimit{}, errors.New("want off, test, live, N/s or N/min")
	}
	switch unit {
	case "s":
	case "min":
		v /= 60
	default:
		return rateLimit{}, errors.New("want off, test, live, N/s or N/min")
	}
	if burst == 0 {
		burst = max(int(math.Ceil(v)), 1)
	}
	return rateLimit{Spec: spec, PerSecond: v, Burst: burst}, nil
}

// options are the spotflowtest options the config stands for, the listener
// apart.
func (cfg *config) options() []spotflowtest.Option {
	opts := []spotflowtest.Option{
		spotflowtest.WithSecretKey(cfg.SecretKey),
		spotflowtest.WithRestrictedKey(cfg.RestrictedKey),
		spotflowtest.WithSeed(cfg.Seed),
		spotflowtest.WithFaults(cfg.Faults),
		spotflowtest.WithBalance(cfg.Balance),
		spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: cfg.CheckoutDelay, FailureRate: cfg.CheckoutFails}),
		spotflowtest.WithRateLimitHeaders(cfg.RateHeaders),
	}
	if cfg.Rate.PerSecond > 0 {
		opts = append(opts, spotflowtest.WithRateLimit(cfg.Rate.PerSecond, cfg.Rate.Burst))
	}
	if cfg.WebhookURL != "" {
		w := cfg.Webhooks
		w.URL, w.Secret = cfg.WebhookURL, cfg.WebhookSecret
		opts = append(opts, spotflowtest.WithWebhooks(w))
	}
	return opts
}
