package openapi

//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen -config cfg.yaml spotflow.yaml

import (
	"context"
	"net/http"

	"github.com/spotflow-go/spotflowhttp"
)

// DefaultServer is the root of the Spotflow API, as in spotflow.yaml.
const DefaultServer = "https://api.spotflow.co/api/v1"

// NewSpotflowClient returns the generated client for server (DefaultServer
// in production) with Spotflow's error policy in its transport: retries with
// backoff, one idempotency key per call, Retry-After. opts configure the
// policy.
//
// The generated code stays as it is: it sees the final response of each call
// and decodes it (JSON201, JSON400, ...) as usual, and
// spotflowhttp.ErrorOf(resp.HTTPResponse) tells what a failure means and how
// many attempts it took.
func NewSpotflowClient(server, secretKey string, opts ...spotflowhttp.Option) (*ClientWithResponses, error) {
	hc := &http.Client{Transport: spotflowhttp.NewTransport(nil, opts...)}
	return NewClientWithResponses(server,
		WithHTTPClient(hc),
		WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+secretKey)
			return nil
		}),
	)
}
