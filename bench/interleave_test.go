package bench_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/bench"
)

// The benchmarks in this file answer "how much slower than bare" on a
// machine whose load changes by the second (2 cores shared with other
// work): every iteration sends one request through each client, in an order
// that rotates, and times each call on its own. A load spike then hits all
// clients alike instead of whichever sub-benchmark happened to be running,
// which is what makes the plain benchmarks' medians swing by tens of percent
// between runs. They report, per client, the mean wall time of a call
// (<client>-ns/call, which includes about 50 ns of time.Now for every client
// alike) and ours/bare, the ratio of the sums.

type callFunc func(c *http.Client) error

// interleaveSerial times block calls through each client per iteration;
// blocks of more than one call keep cheap in-memory calls from measuring
// mostly the switch between clients (caches, time.Now).
func interleaveSerial(b *testing.B, clients []bench.Client, block int, call callFunc) {
	sums := make([]time.Duration, len(clients))
	for _, c := range clients { // warm up: connections, pools
		if err := call(c.HTTP); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	b.ResetTimer()
	for b.Loop() {
		for k := range clients {
			j := (n + k) % len(clients)
			t0 := time.Now()
			for range block {
				if err := call(clients[j].HTTP); err != nil {
					b.Fatal(err)
				}
			}
			sums[j] += time.Since(t0)
		}
		n++
	}
	report(b, clients, sums, n*block)
}

func interleaveParallel(b *testing.B, clients []bench.Client, call callFunc) {
	for _, c := range clients {
		if err := call(c.HTTP); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	sums := make([]time.Duration, len(clients))
	n := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, len(clients))
		i := 0
		for pb.Next() {
			for k := range clients {
				j := (i + k) % len(clients)
				t0 := time.Now()
				if err := call(clients[j].HTTP); err != nil {
					b.Error(err)
					return
				}
				local[j] += time.Since(t0)
			}
			i++
		}
		mu.Lock()
		defer mu.Unlock()
		for j := range local {
			sums[j] += local[j]
		}
		n += i
	})
	report(b, clients, sums, n)
}

func report(b *testing.B, clients []bench.Client, sums []time.Duration, n int) {
	if n == 0 {
		return
	}
	var bare, ours time.Duration
	for j, c := range clients {
		b.ReportMetric(float64(sums[j].Nanoseconds())/float64(n), c.Name+"-ns/call")
		switch c.Name {
		case bench.NameBare:
			bare = sums[j]
		case bench.NameOurs:
			ours = sums[j]
		}
	}
	if bare > 0 {
		b.ReportMetric(float64(ours)/float64(bare), "ours/bare")
	}
}

func getCall(url string) callFunc {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer sk_test_x")
	return func(c *http.Client) error { return drain(c.Do(req)) }
}

func postCall(url string) callFunc {
	return func(c *http.Client) error {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(paymentBody))
		req.Header.Set("Authorization", "Bearer sk_test_x")
		req.Header.Set("Content-Type", "application/json")
		return drain(c.Do(req))
	}
}

func drain(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// BenchmarkInterleavedInMemory is BenchmarkInMemoryGET and POST (with its
// +reference row), interleaved in blocks of 256 calls per client. Each has
// a floor row too: the least a wrapper must do to be what the stack is on
// that call. For a GET, one copy of the request (floor-clone); for a
// create, that copy with a random key in a new header map (floor-key). No
// middleware that keeps the caller's request unchanged costs less.
func BenchmarkInterleavedInMemory(b *testing.B) {
	b.Run("GET", func(b *testing.B) {
		cs := append(contenders(cannedOK, false), bench.Client{Name: "floor-clone", HTTP: &http.Client{Transport: cloneOnly{cannedOK}}})
		interleaveSerial(b, cs, 256, getCall("http://spotflow.invalid/api/v1/payments/verify?reference=ref"))
	})
	b.Run("POST", func(b *testing.B) {
		cs := append(contenders(cannedOK, true), bench.Client{Name: "floor-key", HTTP: &http.Client{Transport: randomKey{cannedOK}}})
		interleaveSerial(b, cs, 256, postCall("http://spotflow.invalid/api/v1/payments"))
	})
}

// cloneOnly sends a shallow copy of each request: the floor of a wrapper
// that, like the stack, does not send the caller's request itself.
type cloneOnly struct{ base http.RoundTripper }

func (t cloneOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.base.RoundTrip(r.WithContext(r.Context()))
}

// randomKey sends a shallow copy of each request with a random
// Idempotency-Key in a new header map (sharing the caller's values, as the
// stack does): the floor of a wrapper that gives each create a key without
// changing the caller's request.
type randomKey struct{ base http.RoundTripper }

func (t randomKey) RoundTrip(r *http.Request) (*http.Response, error) {
	var b [16]byte
	rand.Read(b[:])
	r2 := r.WithContext(r.Context())
	r2.Header = make(http.Header, len(r.Header)+1)
	for k, v := range r.Header {
		r2.Header[k] = v[:len(v):len(v)]
	}
	r2.Header["Idempotency-Key"] = []string{hex.EncodeToString(b[:])}
	return t.base.RoundTrip(r2)
}

// BenchmarkInterleavedLoopback is BenchmarkLoopbackGET and POST, interleaved:
// each client has its own http.Transport with the same settings, all
// talking to one httptest server over keep-alive connections.
func BenchmarkInterleavedLoopback(b *testing.B) {
	srv := loopbackServer()
	defer srv.Close()
	run := func(name string, call callFunc, parallel bool) {
		b.Run(name, func(b *testing.B) {
			base := []*http.Transport{}
			var clients []bench.Client
			for _, n := range []string{bench.NameBare, bench.NameOurs, bench.NameRetryable, bench.NameFailsafe} {
				t := bench.LoopbackTransport(64)
				base = append(base, t)
				clients = append(clients, bench.Client{Name: n, HTTP: pick(contenders(t, false), n)})
			}
			if strings.HasPrefix(name, "POST") {
				// The cost of the key on the wire and in the server, without
				// our stack: bare with a copied request and a fixed key.
				t := bench.LoopbackTransport(64)
				base = append(base, t)
				clients = append(clients, bench.Client{Name: "bare+key", HTTP: &http.Client{Transport: fixedKey{t}}})
			}
			defer func() {
				for _, t := range base {
					t.CloseIdleConnections()
				}
			}()
			if parallel {
				interleaveParallel(b, clients, call)
			} else {
				interleaveSerial(b, clients, 1, call)
			}
		})
	}
	run("GET/serial", getCall(srv.URL+"/api/v1/payments/verify?reference=ref"), false)
	run("GET/parallel", getCall(srv.URL+"/api/v1/payments/verify?reference=ref"), true)
	run("POST/serial", postCall(srv.URL+"/api/v1/payments"), false)
}

// fixedKey sends a copy of each request with a constant Idempotency-Key, the
// least any key-adding middleware must do.
type fixedKey struct{ base http.RoundTripper }

func (t fixedKey) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Set("Idempotency-Key", "0123456789abcdef0123456789abcdef")
	return t.base.RoundTrip(r2)
}
