package spotflowhttp_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
)

// A request made with the context of a finished call's response is a new
// call: its own key, its own ErrorOf.
func TestFinishedCallContextStartsNewCall(t *testing.T) {
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

// A request made from inside a callback with the in-flight call's context
// is a call of its own, not an attempt of the outer call.
func TestCallbackRequestIsOwnCall(t *testing.T) {
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
	if e == nil || e.Attempts != 1 || *n != 2 {
		t.Fatalf("ErrorOf = %v after %d requests; want 1 attempt, and the POST and the GET sent", e, *n)
	}
}

// A base that breaks the RoundTripper contract gets an error, not a panic.
func TestBrokenBase(t *testing.T) {
	body := newReadCloseCounter(strings.NewReader("x"))
	for name, base := range map[string]roundTripperFunc{
		"nil, nil": func(r *http.Request) (*http.Response, error) { return nil, nil },
		"both": func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: body, Request: r}, errors.New("broken")
		},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock())).RoundTrip(mustRequest(t, "GET", "https://api.spotflow.co/x", ""))
			var e *spotflowhttp.Error
			if resp != nil || !errors.As(err, &e) || e.Uncertain != true {
				t.Fatalf("got %v, %v", resp, err)
			}
		})
	}
	if body.closes.Load() == 0 {
		t.Error("the response returned with an error was not closed")
	}
}
