package ogen

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/spotflow-go/spotflowhttp"
)

// DefaultServer is the root of the Spotflow API, as in the spec.
const DefaultServer = "https://api.spotflow.co/api/v1"

// NewSpotflowClient returns the generated client for server (DefaultServer
// in production) with Spotflow's error policy in its transport; opts
// configure the policy. Each call's final response can be recorded with
// ContextWithResponse.
func NewSpotflowClient(server, secretKey string, opts ...spotflowhttp.Option) (*Client, error) {
	hc := &http.Client{Transport: spotflowhttp.NewTransport(nil, opts...)}
	return NewClient(server, bearer(secretKey), WithClient(recorder{hc}))
}

// bearer is the SecuritySource for Spotflow's secret key.
type bearer string

func (b bearer) BearerAuth(context.Context, OperationName) (BearerAuth, error) {
	return BearerAuth{Token: string(b)}, nil
}

type responseKey struct{}

// ContextWithResponse returns a context for one call of a client made by
// NewSpotflowClient, and a function that returns the final *http.Response
// of that call (nil before the call, or if it got none). Pass the response
// to spotflowhttp.ErrorOf to learn what a declared failure, which ogen
// returns as a typed value with a nil error, means. The body of the response
// has been read and closed by ogen; the annotation does not need it.
func ContextWithResponse(ctx context.Context) (context.Context, func() *http.Response) {
	slot := new(atomic.Pointer[http.Response])
	return context.WithValue(ctx, responseKey{}, slot), slot.Load
}

// recorder is the Doer ogen calls: it keeps the final response in the slot
// of the call's context, if there is one.
type recorder struct{ c *http.Client }

func (r recorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.c.Do(req)
	if slot, ok := req.Context().Value(responseKey{}).(*atomic.Pointer[http.Response]); ok && resp != nil {
		slot.Store(resp)
	}
	return resp, err
}
