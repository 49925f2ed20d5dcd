package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// OutageResult is what one client did to a server that answers 503 to
// everything.
type OutageResult struct {
	Client   string
	Requests int // calls made by the caller
	Hits     int // requests that reached the server
	Conns    int // TCP connections the server accepted
	Elapsed  time.Duration
}

// HitsPerRequest is Hits/Requests: how much a client multiplies the load on
// a server that is down. 1.0 means it never retried.
func (r OutageResult) HitsPerRequest() float64 { return float64(r.Hits) / float64(r.Requests) }

// OutageClients returns the contenders of the outage run on base, every one
// with its default number of attempts and its waits between attempts set to
// zero, so that the run finishes at once: spotflowhttp with its defaults
// (4 attempts, retry budget 100) and a zero backoff; retryablehttp with
// RetryWaitMin = RetryWaitMax = 0 (5 attempts); failsafe-go with its HTTP
// retry policy, whose delay is already 0 (3 attempts).
func OutageClients(base http.RoundTripper) []Client {
	return []Client{
		{NameBare, Bare(base)},
		{NameOurs, Ours(base, ZeroWait()...)},
		{NameRetryable, Retryable(base, 0)},
		{NameFailsafe, Failsafe(base, 0)},
	}
}

// Outage sends n sequential GETs through each client of OutageClients to a
// fresh 127.0.0.1 server that answers every request 503 with a small HTML
// body and no Retry-After, as a proxy in front of a dead API does, and
// counts the requests that reached it. Each client gets its own server and
// its own base transport (LoopbackTransport).
func Outage(ctx context.Context, n int) ([]OutageResult, error) {
	var out []OutageResult
	for i := range len(OutageClients(nil)) {
		r, err := outageOne(ctx, n, i)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

const outageBody = "<html><body><h1>503 Service Unavailable</h1></body></html>"

func outageOne(ctx context.Context, n, which int) (OutageResult, error) {
	var hits, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, outageBody)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	base := LoopbackTransport(4)
	defer base.CloseIdleConnections()
	c := OutageClients(base)[which]

	start := time.Now()
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return OutageResult{}, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/payments/verify?reference=ref", nil)
		if err != nil {
			return OutageResult{}, err
		}
		resp, err := c.HTTP.Do(req)
		if err == nil {
			if resp.StatusCode != http.StatusServiceUnavailable {
				return OutageResult{}, fmt.Errorf("%s: status %d from an always-503 server", c.Name, resp.StatusCode)
			}
			if e := spotflowhttp.ErrorOf(resp); c.Name == NameOurs && e == nil {
				return OutageResult{}, fmt.Errorf("%s: ErrorOf(503) is nil", c.Name)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// An error is how retryablehttp and failsafe-go report giving up.
	}
	return OutageResult{
		Client:   c.Name,
		Requests: n,
		Hits:     int(hits.Load()),
		Conns:    int(conns.Load()),
		Elapsed:  time.Since(start),
	}, nil
}
