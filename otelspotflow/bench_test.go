package otelspotflow_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/otelspotflow"
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

// BenchmarkHappyPath is the root module's benchmark of the same name with
// the OpenTelemetry observer added, recording into the SDK: the difference
// is what the metrics cost a call that succeeds at once.
func BenchmarkHappyPath(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())
	obs, err := otelspotflow.NewObserver(mp)
	if err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 1024)
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"Stack", spotflowhttp.NewTransport(cannedBase{})},
		{"Stack+otel", spotflowhttp.NewTransport(cannedBase{}, spotflowhttp.WithObserver(obs))},
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
