package spotflowhttp_test

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/spotflow-go/spotflowhttp"
)

// An option given a value it cannot work with panics when it is made, and
// the message names the option, as time.NewTicker's does. Values at the edge
// of what is valid do not panic.
func TestInvalidOptionValuesPanic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		make   func() spotflowhttp.Option
		panics string // the option the message must name; "" for no panic
	}{
		{"no attempts", func() spotflowhttp.Option { return spotflowhttp.WithMaxAttempts(0) }, "WithMaxAttempts"},
		{"negative attempts", func() spotflowhttp.Option { return spotflowhttp.WithMaxAttempts(-3) }, "WithMaxAttempts"},
		{"one attempt", func() spotflowhttp.Option { return spotflowhttp.WithMaxAttempts(1) }, ""},

		{"negative server_error delay", func() spotflowhttp.Option { return spotflowhttp.WithServerErrorDelay(-time.Second) }, "WithServerErrorDelay"},
		{"no server_error delay", func() spotflowhttp.Option { return spotflowhttp.WithServerErrorDelay(0) }, ""},

		{"negative retry cap", func() spotflowhttp.Option { return spotflowhttp.WithMaxRetryAfter(-time.Nanosecond) }, "WithMaxRetryAfter"},
		{"no retry cap", func() spotflowhttp.Option { return spotflowhttp.WithMaxRetryAfter(0) }, ""},

		{"negative budget", func() spotflowhttp.Option { return spotflowhttp.WithRetryBudget(-1) }, "WithRetryBudget"},
		{"budget off", func() spotflowhttp.Option { return spotflowhttp.WithRetryBudget(0) }, ""},

		{"burst 0 with a finite rate", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(5, 0) }, "WithRateLimit"},
		{"negative burst", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(5, -1) }, "WithRateLimit"},
		{"negative rate", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(-1, 1) }, "WithRateLimit"},
		{"NaN rate", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(rate.Limit(math.NaN()), 1) }, "WithRateLimit"},
		{"rate 0 with a burst", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(0, 3) }, "WithRateLimit"},
		{"no bucket", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(0, 0) }, ""},
		{"infinite rate, burst 0", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(rate.Inf, 0) }, ""},
		{"a slow bucket", func() spotflowhttp.Option { return spotflowhttp.WithRateLimit(0.001, 1) }, ""},

		{"ceiling 0", func() spotflowhttp.Option { return spotflowhttp.WithAdaptiveCeiling(0) }, "WithAdaptiveCeiling"},
		{"negative ceiling", func() spotflowhttp.Option { return spotflowhttp.WithAdaptiveCeiling(-5) }, "WithAdaptiveCeiling"},
		{"NaN ceiling", func() spotflowhttp.Option { return spotflowhttp.WithAdaptiveCeiling(rate.Limit(math.NaN())) }, "WithAdaptiveCeiling"},
		{"a ceiling", func() spotflowhttp.Option { return spotflowhttp.WithAdaptiveCeiling(0.5) }, ""},

		{"empty code", func() spotflowhttp.Option { return spotflowhttp.WithCodeCategory("", spotflowhttp.CategoryRetry) }, "WithCodeCategory"},
		{"unknown category", func() spotflowhttp.Option { return spotflowhttp.WithCodeCategory("card_declined", 9) }, "WithCodeCategory"},
		{"negative category", func() spotflowhttp.Option { return spotflowhttp.WithCodeCategory("card_declined", -1) }, "WithCodeCategory"},
		{"a code made a success", func() spotflowhttp.Option {
			return spotflowhttp.WithCodeCategory("card_declined", spotflowhttp.CategoryNone)
		}, ""},

		{"header name with a space", func() spotflowhttp.Option { return spotflowhttp.WithIdempotencyHeader("Idempotency Key") }, "WithIdempotencyHeader"},
		{"header name with a colon", func() spotflowhttp.Option { return spotflowhttp.WithIdempotencyHeader("X-Key:") }, "WithIdempotencyHeader"},
		{"the default header", func() spotflowhttp.Option { return spotflowhttp.WithIdempotencyHeader("") }, ""},
		{"another header", func() spotflowhttp.Option { return spotflowhttp.WithIdempotencyHeader("X-Idempotency-Key") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := panicOf(func() { spotflowhttp.NewTransport(nil, tc.make()) })
			switch {
			case tc.panics == "" && msg != "":
				t.Fatalf("panicked for a valid value: %s", msg)
			case tc.panics != "" && msg == "":
				t.Fatalf("no panic; want one naming %s", tc.panics)
			case tc.panics != "" && !strings.HasPrefix(msg, "spotflowhttp: "+tc.panics+": "):
				t.Fatalf("panic %q does not start with spotflowhttp: %s: ", msg, tc.panics)
			}
		})
	}
}

// The option panics when it is made, before any constructor sees it, so the
// stack trace points at the line that wrote the bad value.
func TestInvalidOptionPanicsWhenMade(t *testing.T) {
	if msg := panicOf(func() { spotflowhttp.WithMaxAttempts(0) }); msg == "" {
		t.Fatal("WithMaxAttempts(0) did not panic by itself")
	}
	if msg := panicOf(func() { spotflowhttp.WithRateLimit(5, 0) }); msg == "" {
		t.Fatal("WithRateLimit(5, 0) did not panic by itself")
	}
}

// The edge values that are allowed work: an infinite rate with burst 0 and
// WithRateLimit(0, 0) send requests instead of refusing them.
func TestEdgeRateLimitsSend(t *testing.T) {
	for _, opt := range []spotflowhttp.Option{spotflowhttp.WithRateLimit(rate.Inf, 0), spotflowhttp.WithRateLimit(0, 0)} {
		sent := 0
		base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			sent++
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("{}")), Request: r}, nil
		})
		client := &http.Client{Transport: spotflowhttp.NewTransport(base, opt)}
		for i := 0; i < 3; i++ {
			resp, err := client.Get("http://spotflow.test/api/v1/payments/verify?reference=x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if sent != 3 {
			t.Fatalf("%d of 3 requests sent", sent)
		}
	}
}

// panicOf runs fn and returns what it panicked with, "" if it did not.
func panicOf(fn func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
			if msg == "" {
				msg = "(empty panic)"
			}
		}
	}()
	fn()
	return ""
}
