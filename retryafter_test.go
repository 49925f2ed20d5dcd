package spotflowhttp_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// Whatever the Retry-After value, the wait is within [0, the cap] and
// RetryAfter is never negative.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "1", "120", " 7 ", "-1", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "99999999999999999999999", "soon", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		srv := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {v}}, Body: http.NoBody, Request: r}, nil
		})
		clock := newFakeClock()
		tr := spotflowhttp.NewTransport(srv, spotflowhttp.WithClock(clock), spotflowhttp.WithMaxAttempts(2))
		req, _ := http.NewRequest("GET", "https://api.spotflow.co/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		e := spotflowhttp.ErrorOf(resp)
		if e.RetryAfter < 0 {
			t.Fatalf("negative RetryAfter %v for %q", e.RetryAfter, v)
		}
		for _, d := range clock.Sleeps() {
			if d < 0 || d > 60*time.Second {
				t.Fatalf("slept %v for Retry-After %q, outside [0, cap]", d, v)
			}
		}
	})
}

// A Retry-After too far away to wait for goes back at once, with one
// attempt, whatever its form: an HTTP-date past 2262 (beyond what UnixNano
// can hold) or more seconds than a Duration can hold must not overflow into
// a short or negative wait. It does not pause the transport either: the
// next call is sent at once.
func TestRetryAfterFarAway(t *testing.T) {
	for _, tt := range []struct {
		status int
		value  string
	}{
		{429, "Fri, 31 Dec 9999 23:59:59 GMT"},
		{503, "Fri, 31 Dec 9999 23:59:59 GMT"},
		{429, "Sat, 01 Jan 2263 00:00:00 GMT"},
		{429, "99999999999999999999999"},
		{503, "9223372037"}, // a second more than a Duration holds
	} {
		for _, mode := range []struct {
			name string
			opts []spotflowhttp.Option
		}{{"defaults", nil}, {"adaptive", []spotflowhttp.Option{spotflowhttp.WithAdaptiveRateLimit()}}} {
			t.Run(fmt.Sprintf("%d %s %s", tt.status, tt.value, mode.name), func(t *testing.T) {
				clock := newFakeClock()
				n := 0
				base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
					n++
					h := http.Header{}
					status := 200
					if n == 1 {
						status = tt.status
						h.Set("Retry-After", tt.value)
					}
					return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
				})
				tr := spotflowhttp.NewTransport(base, append(mode.opts, spotflowhttp.WithClock(clock))...)
				resp, err := tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				e := spotflowhttp.ErrorOf(resp)
				if resp.StatusCode != tt.status || e == nil || e.Attempts != 1 || n != 1 || len(clock.Sleeps()) != 0 {
					t.Fatalf("status %d, %v after %d requests and waits %v; want the %d back at once", resp.StatusCode, e, n, clock.Sleeps(), tt.status)
				}
				if e.RetryAfter <= spotflowhttp.DefaultMaxRetryAfter {
					t.Errorf("RetryAfter = %v, want more than the cap", e.RetryAfter)
				}
				// Adaptive mode paces the next call a little (it has learned
				// from the first), but far less than a second.
				resp, err = tr.RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
				var waited time.Duration
				for _, d := range clock.Sleeps() {
					waited += d
				}
				if err != nil || resp.StatusCode != 200 || n != 2 || waited > time.Second {
					t.Fatalf("next call: %v, %v after %d requests and waits %v; want 200 at once", resp, err, n, clock.Sleeps())
				}
				resp.Body.Close()
			})
		}
	}
}
