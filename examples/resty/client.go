package resty

import (
	"github.com/go-resty/resty/v2"

	"github.com/spotflow-go/spotflowhttp"
)

// DefaultServer is the root of the Spotflow API.
const DefaultServer = "https://api.spotflow.co/api/v1"

// NewSpotflowClient returns a resty client for server (DefaultServer in
// production) with Spotflow's error policy in its transport; opts configure
// the policy. Its own retries stay off (resty's default): the transport
// retries, with one idempotency key per call.
func NewSpotflowClient(server, secretKey string, opts ...spotflowhttp.Option) *resty.Client {
	return resty.New().
		SetTransport(spotflowhttp.NewTransport(nil, opts...)).
		SetBaseURL(server).
		SetAuthToken(secretKey).
		SetRetryCount(0)
}
