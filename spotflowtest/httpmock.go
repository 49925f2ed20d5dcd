package spotflowtest

import (
	"crypto/rand"
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/jarcoal/httpmock"
)

// The functions below return httpmock responders that answer the way the
// Spotflow API (or the proxy in front of it) does, with the same bodies as
// [Server], so tests that already mock their transport can register a
// Spotflow failure in one line:
//
//	httpmock.RegisterResponder("POST", url, spotflowtest.RateLimitExceeded(2*time.Second))
//
// Every responder builds a fresh response per call, with Content-Type and
// Content-Length set and Request pointing at the request, so it can be
// registered once and hit many times. They are safe for concurrent use.

// MissingParameter responds 400 with
// {"error":"Bad Request","message":"missing_parameter","status":400}.
func MissingParameter() httpmock.Responder {
	return jsonResponder(http.StatusBadRequest, func() []byte { return badRequest(codeMissingParameter) })
}

// InsufficientBalance responds 400 with
// {"error":"Bad Request","message":"insufficient_balance","status":400}.
func InsufficientBalance() httpmock.Responder {
	return jsonResponder(http.StatusBadRequest, func() []byte { return badRequest(codeInsufficientBalance) })
}

// DuplicateReference responds 400 with
// {"error":"Bad Request","message":"duplicate_reference","status":400}.
func DuplicateReference() httpmock.Responder {
	return jsonResponder(http.StatusBadRequest, func() []byte { return badRequest(codeDuplicateReference) })
}

// InvalidCredentials responds 401 with
// {"code":"invalid_credentials","message":"Invalid API key","statusCode":401,"requestMarker":"<random>"}.
func InvalidCredentials() httpmock.Responder {
	return jsonResponder(http.StatusUnauthorized, func() []byte {
		return marked(codeInvalidCredentials, "Invalid API key", http.StatusUnauthorized, requestMarker())
	})
}

// UnknownAuthError responds 401 with a code that is not in Spotflow's error
// reference, as the API has been seen to do:
// {"code":"AUTH_ERROR","message":"Authentication failed","statusCode":401,"requestMarker":"<random>"}.
// A client should classify it by its status.
func UnknownAuthError() httpmock.Responder {
	return jsonResponder(http.StatusUnauthorized, func() []byte {
		return marked(codeUnknownAuth, "Authentication failed", http.StatusUnauthorized, requestMarker())
	})
}

// Forbidden responds 403, as to a key that lacks a permission, with
// {"code":"forbidden","message":"This API key does not have permission to perform this action","statusCode":403,"requestMarker":"<random>"}.
func Forbidden() httpmock.Responder {
	return jsonResponder(http.StatusForbidden, func() []byte {
		return marked(codeForbidden, forbiddenMessage, http.StatusForbidden, requestMarker())
	})
}

// NotFound responds 404 with {"code":"not_found","message":"Payment not found"}.
func NotFound() httpmock.Responder {
	return jsonResponder(http.StatusNotFound, func() []byte { return coded(codeNotFound, "Payment not found") })
}

// RateLimitExceeded responds 429 with
// {"code":"rate_limit_exceeded","message":"Too many requests"} and a
// Retry-After header of retryAfter in whole seconds, rounded up. A
// retryAfter <= 0 sends no Retry-After, which the API may also do.
func RateLimitExceeded(retryAfter time.Duration) httpmock.Responder {
	body := coded(codeRateLimitExceeded, "Too many requests")
	return func(req *http.Request) (*http.Response, error) {
		resp := newResponse(req, http.StatusTooManyRequests, contentTypeJSON, body)
		if retryAfter > 0 {
			secs := int64(math.Ceil(retryAfter.Seconds()))
			resp.Header.Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		return resp, nil
	}
}

// ServerError responds 500 with
// {"code":"server_error","message":"Internal server error"}.
func ServerError() httpmock.Responder {
	return jsonResponder(http.StatusInternalServerError, func() []byte { return coded(codeServerError, "Internal server error") })
}

// ProxyError responds with status (502, 503 or 504 in practice) and the
// HTML body a proxy sends, such as
// <html><body><h1>503 Service Unavailable</h1></body></html>.
func ProxyError(status int) httpmock.Responder {
	body := htmlError(status)
	return func(req *http.Request) (*http.Response, error) {
		return newResponse(req, status, contentTypeHTML, body), nil
	}
}

// ConnectionReset fails the request the way a reset TCP connection does: it
// returns no response and a *net.OpError with Op "read" wrapping
// syscall.ECONNRESET, so errors.Is(err, syscall.ECONNRESET) holds. Like a
// real reset, it leaves the client unable to know whether the request was
// processed.
func ConnectionReset() httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		return nil, &net.OpError{
			Op:  "read",
			Net: "tcp",
			Err: os.NewSyscallError("read", syscall.ECONNRESET),
		}
	}
}

// PaymentCreated responds 201 with a successful payment object:
// {"id":"pay_<random>","reference":"<reference>","amount":<amount>,"currency":"NGN","status":"successful","metadata":{}}.
// An empty reference is replaced by a random "spf_" one, per call.
func PaymentCreated(reference string, amount int64) httpmock.Responder {
	return jsonResponder(http.StatusCreated, func() []byte {
		ref := reference
		if ref == "" {
			ref = "spf_" + randomHex(8)
		}
		return paymentJSON(&Payment{
			ID:        "pay_" + randomHex(8),
			Reference: ref,
			Amount:    amount,
			Currency:  "NGN",
			Status:    "successful",
		})
	})
}

func jsonResponder(status int, body func() []byte) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		return newResponse(req, status, contentTypeJSON, body()), nil
	}
}

// newResponse builds a response the way net/http would hand it to a client.
// httpmock.NewBytesResponse leaves Request nil, so it is attached here.
func newResponse(req *http.Request, status int, contentType string, body []byte) *http.Response {
	resp := httpmock.NewBytesResponse(status, body)
	resp.Header.Set("Content-Type", contentType)
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.ContentLength = int64(len(body))
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	resp.Request = req
	return resp
}

func requestMarker() string {
	return randomHex(12)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
