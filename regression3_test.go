package spotflowhttp_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
)

func TestRegressionOddInputs(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp func(r *http.Request) *http.Response
		get  func() (io.ReadCloser, error)
		cl   int64
	}{
		{"nil header 429", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 429, Body: http.NoBody, Request: r}
		}, nil, 2},
		{"nil body 503", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Header: http.Header{}, Request: r}
		}, nil, 2},
		{"status 0", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 0, Body: http.NoBody, Request: r}
		}, nil, 2},
		{"neg CL", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}
		}, nil, -5},
		{"GetBody error", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}
		}, func() (io.ReadCloser, error) { return nil, errors.New("x") }, 2},
		{"nil request on resp", func(r *http.Request) *http.Response { return &http.Response{StatusCode: 503, Body: http.NoBody} }, nil, 2},
		{"huge retry-after date", func(r *http.Request) *http.Response {
			return &http.Response{StatusCode: 503, Header: http.Header{"Retry-After": {"Fri, 31 Dec 9999 23:59:59 GMT"}}, Body: http.NoBody, Request: r}
		}, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				if r.Body != nil {
					r.Body.Close()
				}
				return tc.resp(r), nil
			})
			body := newReadCloseCounter(strings.NewReader(`{}`))
			req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", body)
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(`{}`)), nil }
			if tc.get != nil {
				req.GetBody = tc.get
			}
			req.ContentLength = tc.cl
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithReference("reference"), spotflowhttp.WithAdaptiveRateLimit(), spotflowhttp.WithResponseCheck(func(*http.Response, []byte) *spotflowhttp.Error { return nil }))
			resp, err := tr.RoundTrip(req)
			if (resp == nil) == (err == nil) {
				t.Fatalf("resp %v err %v", resp, err)
			}
			if body.closes.Load() != 1 {
				t.Errorf("caller body closed %d times", body.closes.Load())
			}
			t.Logf("%v %v", spotflowhttp.ErrorOf(resp), err)
		})
	}
}
