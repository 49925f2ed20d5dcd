package spotflowtest_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

func TestResponders(t *testing.T) {
	const url = "https://api.spotflow.test/api/v1/payments"
	marker := `"requestMarker":"[0-9a-f]{24}"`
	tests := []struct {
		name        string
		responder   httpmock.Responder
		status      int
		contentType string
		body        *regexp.Regexp
		retryAfter  string
	}{
		{"MissingParameter", spotflowtest.MissingParameter(), 400, "application/json", exactly(missingParameter), ""},
		{"InsufficientBalance", spotflowtest.InsufficientBalance(), 400, "application/json", exactly(insufficientBalance), ""},
		{"DuplicateReference", spotflowtest.DuplicateReference(), 400, "application/json", exactly(duplicateReference), ""},
		{"InvalidCredentials", spotflowtest.InvalidCredentials(), 401, "application/json", invalidCredentials, ""},
		{"UnknownAuthError", spotflowtest.UnknownAuthError(), 401, "application/json",
			regexp.MustCompile(`^\{"code":"AUTH_ERROR","message":"Authentication failed","statusCode":401,` + marker + `\}$`), ""},
		{"Forbidden", spotflowtest.Forbidden(), 403, "application/json",
			regexp.MustCompile(`^\{"code":"forbidden","message":"[^"]+","statusCode":403,` + marker + `\}$`), ""},
		{"NotFound", spotflowtest.NotFound(), 404, "application/json", exactly(paymentNotFound), ""},
		{"RateLimitExceeded", spotflowtest.RateLimitExceeded(2 * time.Second), 429, "application/json", exactly(rateLimitExceeded), "2"},
		{"RateLimitExceeded rounds up", spotflowtest.RateLimitExceeded(1500 * time.Millisecond), 429, "application/json", exactly(rateLimitExceeded), "2"},
		{"RateLimitExceeded without header", spotflowtest.RateLimitExceeded(0), 429, "application/json", exactly(rateLimitExceeded), ""},
		{"ServerError", spotflowtest.ServerError(), 500, "application/json", exactly(serverError), ""},
		{"ProxyError 502", spotflowtest.ProxyError(502), 502, "text/html; charset=utf-8", exactly(`<html><body><h1>502 Bad Gateway</h1></body></html>`), ""},
		{"ProxyError 503", spotflowtest.ProxyError(503), 503, "text/html; charset=utf-8", exactly(outageHTML), ""},
		{"ProxyError 504", spotflowtest.ProxyError(504), 504, "text/html; charset=utf-8", exactly(`<html><body><h1>504 Gateway Timeout</h1></body></html>`), ""},
		{"PaymentCreated", spotflowtest.PaymentCreated("ref-1", 5000), 201, "application/json",
			regexp.MustCompile(`^\{"id":"pay_[0-9a-f]{16}","reference":"ref-1","amount":5000,"currency":"NGN","status":"successful","metadata":\{\}\}$`), ""},
		{"PaymentCreated without reference", spotflowtest.PaymentCreated("", 1), 201, "application/json",
			regexp.MustCompile(`^\{"id":"pay_[0-9a-f]{16}","reference":"spf_[0-9a-f]{16}","amount":1,`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mt := httpmock.NewMockTransport()
			mt.RegisterResponder("POST", url, tt.responder)
			client := &http.Client{Transport: mt}
			for range 2 { // a responder serves many requests
				resp, err := client.Post(url, "application/json", strings.NewReader(`{}`))
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tt.status {
					t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
				}
				if got := resp.Header.Get("Content-Type"); got != tt.contentType {
					t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
				}
				if !tt.body.Match(body) {
					t.Errorf("body = %s, want match %s", body, tt.body)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
				}
				if resp.Request == nil || resp.Request.URL.String() != url {
					t.Errorf("Request not attached: %v", resp.Request)
				}
				if resp.ContentLength != int64(len(body)) {
					t.Errorf("ContentLength = %d, body %d bytes", resp.ContentLength, len(body))
				}
			}
		})
	}
}

func TestConnectionResetResponder(t *testing.T) {
	const url = "https://api.spotflow.test/api/v1/payments"
	mt := httpmock.NewMockTransport()
	mt.RegisterResponder("POST", url, spotflowtest.ConnectionReset())
	client := &http.Client{Transport: mt}
	resp, err := client.Post(url, "application/json", strings.NewReader(`{}`))
	if resp != nil {
		resp.Body.Close()
		t.Fatalf("got a response: %d", resp.StatusCode)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("err = %v, want ECONNRESET", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" {
		t.Errorf("err = %#v, want a *net.OpError with Op read", err)
	}
}

func exactly(s string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.QuoteMeta(s) + "$")
}
