package spotflowhttp_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
)

func statusBase(statuses ...int) (http.RoundTripper, *int) {
	n := new(int)
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		s := statuses[min(*n, len(statuses)-1)]
		*n++
		return &http.Response{StatusCode: s, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"code":"x_y"}`)), Request: r}, nil
	}), n
}

// ErrorOf after the call's context is reused for a second call.
func TestRegressionContextReuse(t *testing.T) {
	base, _ := statusBase(400, 200)
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()))
	req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", strings.NewReader(`{}`))
	resp1, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	req2, _ := http.NewRequestWithContext(resp1.Request.Context(), "POST", "https://api.spotflow.co/x", strings.NewReader(`{}`))
	resp2, err := tr.RoundTrip(req2)
	if err != nil {
		t.Fatal(err)
	}
	e1, e2 := spotflowhttp.ErrorOf(resp1), spotflowhttp.ErrorOf(resp2)
	if e1 == nil || e1.StatusCode != 400 || e2 != nil || spotflowhttp.IdempotencyKeyOf(resp1) == spotflowhttp.IdempotencyKeyOf(resp2) {
		t.Fatalf("e1 %v e2 %v keys %q %q", e1, e2, spotflowhttp.IdempotencyKeyOf(resp1), spotflowhttp.IdempotencyKeyOf(resp2))
	}
}

// Found in review: a request made from inside a callback with the in-flight
// call's context is a call of its own, not an attempt of the outer call.
func TestRegressionInFlightContextJoinsCall(t *testing.T) {
	base, n := statusBase(200)
	var tr *spotflowhttp.Transport
	tr = spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithResponseCheck(func(resp *http.Response, _ []byte) *spotflowhttp.Error {
			if resp.Request.Method == "POST" {
				r, _ := http.NewRequestWithContext(resp.Request.Context(), "GET", "https://api.spotflow.co/status", nil)
				if rr, err := tr.RoundTrip(r); err == nil {
					rr.Body.Close()
				}
			}
			return &spotflowhttp.Error{Category: spotflowhttp.CategoryDontRetry, Message: "failed charge"}
		}))
	req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", strings.NewReader(`{}`))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	e := spotflowhttp.ErrorOf(resp)
	t.Logf("sent %d, ErrorOf %v", *n, e)
	if e == nil || e.Attempts != 1 {
		t.Fatalf("Attempts = %v, one POST sent", e)
	}
}

// Found in review: GetBody returning (nil, nil) must not panic.
func TestRegressionGetBodyNilNil(t *testing.T) {
	base, _ := statusBase(200)
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithReference("reference"))
	req, _ := http.NewRequestWithContext(context.Background(), "POST", "https://api.spotflow.co/x", strings.NewReader(`{}`))
	req.GetBody = func() (io.ReadCloser, error) { return nil, nil }
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("panic: %v", p)
		}
	}()
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
}
