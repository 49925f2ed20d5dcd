package bench_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/bench"
)

// roundTripperFunc is an in-memory base transport.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

const okBody = `{"id":"pay_1","reference":"ref","amount":5000,"currency":"NGN","status":"successful"}`

// cannedOK is the in-memory base: it consumes and closes the request body,
// as a real transport does, and answers a fresh 200 with a small body each
// time. Its own cost is the same under every client, so differences from
// bare are the middleware's.
var cannedOK = roundTripperFunc(func(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(okBody)),
		ContentLength: int64(len(okBody)),
		Request:       req,
	}, nil
})

// paymentBody is a 1 KiB JSON payment request, the shape a generated client
// sends; its metadata pads it to exactly 1024 bytes.
var paymentBody = func() []byte {
	head := `{"amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"},"metadata":{"order_id":"ord-000001","note":"`
	tail := `"}}`
	pad := strings.Repeat("x", 1024-len(head)-len(tail))
	b := []byte(head + pad + tail)
	if len(b) != 1024 {
		panic("payment body is " + strconv.Itoa(len(b)) + " bytes")
	}
	return b
}()

// contenders returns the four clients on one base, in table order, plus
// extras for our configurations that are worth a row of their own.
func contenders(base http.RoundTripper, extras bool) []bench.Client {
	cs := []bench.Client{
		{Name: bench.NameBare, HTTP: bench.Bare(base)},
		{Name: bench.NameOurs, HTTP: bench.Ours(base)},
		{Name: bench.NameRetryable, HTTP: bench.Retryable(base, -1)},
		{Name: bench.NameFailsafe, HTTP: bench.Failsafe(base, 0)},
	}
	if extras {
		cs = append(cs, bench.Client{Name: bench.NameOurs + "+reference",
			HTTP: bench.Ours(base, spotflowhttp.WithReference("reference"))})
	}
	return cs
}

func doDrain(b *testing.B, c *http.Client, req *http.Request) {
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// BenchmarkInMemoryGET isolates the middleware: the base answers from memory.
// The request is made once and reused, so the figures are the client's.
func BenchmarkInMemoryGET(b *testing.B) {
	for _, c := range contenders(cannedOK, false) {
		b.Run(c.Name, func(b *testing.B) {
			req, _ := http.NewRequest(http.MethodGet, "http://spotflow.invalid/api/v1/payments/verify?reference=ref", nil)
			req.Header.Set("Authorization", "Bearer sk_test_x")
			b.ReportAllocs()
			for b.Loop() {
				doDrain(b, c.HTTP, req)
			}
		})
	}
}

// BenchmarkInMemoryPOST sends a 1 KiB payment from a bytes.Reader (so
// http.NewRequest sets GetBody). A new request per iteration is part of
// every client's figure; for spotflowhttp the idempotency key (and, in the
// +reference row, writing it into the JSON body) is part of its cost.
func BenchmarkInMemoryPOST(b *testing.B) {
	for _, c := range contenders(cannedOK, true) {
		b.Run(c.Name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(paymentBody)))
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, "http://spotflow.invalid/api/v1/payments", bytes.NewReader(paymentBody))
				req.Header.Set("Authorization", "Bearer sk_test_x")
				req.Header.Set("Content-Type", "application/json")
				doDrain(b, c.HTTP, req)
			}
		})
	}
}

func loopbackServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(okBody)))
		io.WriteString(w, okBody)
	}))
}

// BenchmarkLoopbackGET is the happy path over a real keep-alive connection
// to an httptest server on 127.0.0.1: serial, then b.RunParallel. Each
// client has its own http.Transport with the same settings.
func BenchmarkLoopbackGET(b *testing.B) {
	srv := loopbackServer()
	defer srv.Close()
	for _, mode := range []string{"serial", "parallel"} {
		for _, name := range []string{bench.NameBare, bench.NameOurs, bench.NameRetryable, bench.NameFailsafe} {
			b.Run(fmt.Sprintf("%s/%s", mode, name), func(b *testing.B) {
				base := bench.LoopbackTransport(64)
				defer base.CloseIdleConnections()
				c := pick(contenders(base, false), name)
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/payments/verify?reference=ref", nil)
				doDrain(b, c, req) // open the connection outside the timer
				b.ReportAllocs()
				b.ResetTimer()
				if mode == "serial" {
					for b.Loop() {
						doDrain(b, c, req)
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						resp, err := c.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
			})
		}
	}
}

// BenchmarkLoopbackPOST is the serial 1 KiB POST over loopback.
func BenchmarkLoopbackPOST(b *testing.B) {
	srv := loopbackServer()
	defer srv.Close()
	for _, name := range []string{bench.NameBare, bench.NameOurs, bench.NameRetryable, bench.NameFailsafe} {
		b.Run(name, func(b *testing.B) {
			base := bench.LoopbackTransport(64)
			defer base.CloseIdleConnections()
			c := pick(contenders(base, false), name)
			post := func() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/payments", bytes.NewReader(paymentBody))
				req.Header.Set("Content-Type", "application/json")
				doDrain(b, c, req)
			}
			post()
			b.ReportAllocs()
			b.SetBytes(int64(len(paymentBody)))
			b.ResetTimer()
			for b.Loop() {
				post()
			}
		})
	}
}

func pick(cs []bench.Client, name string) *http.Client {
	for _, c := range cs {
		if c.Name == name {
			return c.HTTP
		}
	}
	panic("no client " + name)
}
