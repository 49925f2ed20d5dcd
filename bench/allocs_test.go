package bench_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/bench"
)

// TestHotPathAllocations holds the allocation targets of the happy path
// (issue 22 asks none for a GET, at most 3 for a keyed create and 6 with
// WithReference) against a bare client on the same in-memory base: a GET
// sent unchanged costs the stack no allocation; a keyed create one for the
// call and its copy of the request, two for the header map that carries
// the key (over net/http's Transport, which asks for the client trace, its
// closure makes one more); WithReference adds the body's buffer, its
// reader and, for a body it changes, its GetBody.
// Allocations, unlike nanoseconds, do not depend on the machine's load, so
// CI can hold them; the times are in README's table.
func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	get := func(c *http.Client) func() {
		req, _ := http.NewRequest(http.MethodGet, "http://spotflow.invalid/api/v1/payments/verify?reference=ref", nil)
		req.Header.Set("Authorization", "Bearer sk_test_x")
		return func() { drainOnce(t, c, req) }
	}
	post := func(c *http.Client) func() {
		return func() {
			req, _ := http.NewRequest(http.MethodPost, "http://spotflow.invalid/api/v1/payments", bytes.NewReader(paymentBody))
			req.Header.Set("Authorization", "Bearer sk_test_x")
			req.Header.Set("Content-Type", "application/json")
			drainOnce(t, c, req)
		}
	}
	bare := bench.Bare(cannedOK)
	for _, c := range []struct {
		name  string
		do    func(*http.Client) func()
		ours  *http.Client
		extra float64
	}{
		{"GET", get, bench.Ours(cannedOK), 0},
		{"POST with a key", post, bench.Ours(cannedOK), 3},
		{"POST with WithReference", post, bench.Ours(cannedOK, spotflowhttp.WithReference("reference")), 6},
	} {
		b := testing.AllocsPerRun(200, c.do(bare))
		o := testing.AllocsPerRun(200, c.do(c.ours))
		t.Logf("%s: bare %.0f allocations, spotflowhttp %.0f (+%.0f)", c.name, b, o, o-b)
		if o-b > c.extra {
			t.Errorf("%s: spotflowhttp allocates %.0f more than bare, want at most %.0f", c.name, o-b, c.extra)
		}
	}
}

func drainOnce(t *testing.T, c *http.Client, req *http.Request) {
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
