package spotflowhttp_test

import (
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

// An HTTP-date past 2262 does not overflow into a negative wait.
func TestRetryAfterFarDate(t *testing.T) {
	clock := newFakeClock()
	n := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		n++
		h := http.Header{}
		status := 200
		if n == 1 {
			status = 429
			h.Set("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")
		}
		return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(clock))
	req, _ := http.NewRequest("GET", "https://api.spotflow.co/x", nil)
	tr.RoundTrip(req)
	req, _ = http.NewRequest("GET", "https://api.spotflow.co/x", nil)
	_, err := tr.RoundTrip(req)
	t.Logf("second call right after Retry-After 9999: err=%v hits=%d", err, n)
}
