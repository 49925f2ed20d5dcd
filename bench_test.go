package spotflowhttp_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
)

// cannedBase answers every request at once with a fresh 200, so that a
// benchmark measures only the layers above it.
type cannedBase struct{}

func (cannedBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// BenchmarkHappyPath is the hot path: a call that succeeds at once. Compare
// Bare with Stack: the difference is the cost of the whole stack.
func BenchmarkHappyPath(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"Bare", cannedBase{}},
		{"Stack", spotflowhttp.NewTransport(cannedBase{})},
	} {
		b.Run("GET/"+bc.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "https://api.spotflow.co/api/v1/payments/verify?reference=r", nil)
			req.Header.Set("Authorization", "Bearer sk_test_x")
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bc.rt.RoundTrip(req)
				if err != nil || spotflowhttp.ErrorOf(resp) != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
		b.Run("POST/"+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("POST", "https://api.spotflow.co/api/v1/payments", bytes.NewReader(payload))
				req.Header.Set("Authorization", "Bearer sk_test_x")
				resp, err := bc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkErrorOf is the cost of asking what a response means.
func BenchmarkErrorOf(b *testing.B) {
	tr := spotflowhttp.NewTransport(cannedBase{})
	req, _ := http.NewRequest("GET", "https://api.spotflow.co/x", nil)
	resp, _ := tr.RoundTrip(req)
	b.Run("success through the stack", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if spotflowhttp.ErrorOf(resp) != nil {
				b.Fatal("error")
			}
		}
	})
	b.Run("error body on the spot", func(b *testing.B) {
		b.ReportAllocs()
		const body = `{"error":"Bad Request","message":"missing_parameter","status":400}`
		for b.Loop() {
			r := &http.Response{StatusCode: 400, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body))}
			if spotflowhttp.ErrorOf(r) == nil {
				b.Fatal("nil")
			}
		}
	})
}
