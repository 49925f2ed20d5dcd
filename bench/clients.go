// Package bench compares spotflowhttp's NewTransport stack with a bare
// transport and two popular retrying clients, hashicorp/go-retryablehttp and
// failsafe-go, on the same base RoundTripper: middleware cost (benchmarks in
// this package's tests), server hits in an outage, goodput under a server
// rate limit, and duplicate charges under injected faults (Outage, Limits,
// Chaos, also printed by cmd/compare).
//
// Every client is an *http.Client whose transport ends in the base given to
// its constructor, so all four pay the same for the network and differ only
// by what they put on top of it.
package bench

import (
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/spotflow-go/spotflowhttp"
)

// Client is one contender: a name for the tables and the client itself.
type Client struct {
	Name string
	HTTP *http.Client
}

// Names of the contenders, as printed in the tables.
const (
	NameBare      = "bare"
	NameOurs      = "spotflowhttp"
	NameRetryable = "retryablehttp"
	NameFailsafe  = "failsafe-go"
)

// Bare is the base transport alone: the floor every other client is
// measured against.
func Bare(base http.RoundTripper) *http.Client {
	return &http.Client{Transport: base}
}

// Ours is spotflowhttp.NewTransport(base, opts...).
func Ours(base http.RoundTripper, opts ...spotflowhttp.Option) *http.Client {
	return &http.Client{Transport: spotflowhttp.NewTransport(base, opts...)}
}

// Retryable is go-retryablehttp with its defaults (RetryMax 4, i.e. five
// attempts; DefaultRetryPolicy, which retries connection errors, 429 and 5xx
// except 501, for every method; DefaultBackoff, which honours Retry-After on
// 429 and 503), its inner http.Client's transport replaced by base, its
// logger turned off (by default it writes a line to stderr per request, which
// would measure log.Printf), used through StandardClient as the README
// suggests for code that wants an *http.Client. wait, when non-negative,
// sets RetryWaitMin and RetryWaitMax, the backoff between attempts that
// carry no Retry-After; a negative wait keeps the defaults (1 s to 30 s).
func Retryable(base http.RoundTripper, wait time.Duration) *http.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: base}
	rc.Logger = nil
	if wait >= 0 {
		rc.RetryWaitMin, rc.RetryWaitMax = wait, wait
	}
	return rc.StandardClient()
}

// Failsafe is failsafe-go's failsafehttp.NewRoundTripper with the retry
// policy of failsafehttp.NewRetryPolicyBuilder, as its docs suggest for HTTP:
// connection errors, 429 and 5xx except 501 are retried, for every method,
// up to 2 retries (three attempts), with Retry-After (whole seconds) honoured
// on 429 and 503 and no delay otherwise. wait, when positive, adds a fixed
// delay between attempts without Retry-After.
func Failsafe(base http.RoundTripper, wait time.Duration) *http.Client {
	b := failsafehttp.NewRetryPolicyBuilder()
	if wait > 0 {
		b = b.WithDelay(wait)
	}
	return FailsafeWith(base, b)
}

// FailsafeWith is failsafehttp.NewRoundTripper over base with the retry
// policy b builds.
func FailsafeWith(base http.RoundTripper, b retrypolicy.Builder[*http.Response]) *http.Client {
	return &http.Client{Transport: failsafehttp.NewRoundTripper(base, b.Build())}
}

// ZeroWait is the spotflowhttp option for runs that must not sleep between
// attempts: a backoff of 0 and no 30 s floor after server_error. Retry-After
// is still honoured.
func ZeroWait() []spotflowhttp.Option {
	return []spotflowhttp.Option{
		spotflowhttp.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
		spotflowhttp.WithServerErrorDelay(0),
	}
}

// ConstantWait is like ZeroWait with a fixed wait d between attempts.
func ConstantWait(d time.Duration) []spotflowhttp.Option {
	return []spotflowhttp.Option{
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(d) }),
		spotflowhttp.WithServerErrorDelay(0),
	}
}

// LoopbackTransport is the base used for every client in runs over
// loopback: a fresh http.Transport with enough idle connections per host for
// the workers, so that no client is starved of keep-alive by the pool size.
func LoopbackTransport(idlePerHost int) *http.Transport {
	return &http.Transport{
		MaxIdleConns:        idlePerHost * 2,
		MaxIdleConnsPerHost: idlePerHost,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}
