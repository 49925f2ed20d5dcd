package spotflowtest

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Spotflow's error bodies are not uniform. These are the shapes the real API
// has been seen to send; the simulator and the httpmock responders produce
// exactly these, so a client must cope with all of them.

// The error codes from Spotflow's error reference, plus the ones the
// simulator adds for cases the reference does not cover.
const (
	codeMissingParameter     = "missing_parameter"
	codeInvalidCredentials   = "invalid_credentials"
	codeInsufficientBalance  = "insufficient_balance"
	codeDuplicateReference   = "duplicate_reference"
	codeRateLimitExceeded    = "rate_limit_exceeded"
	codeServerError          = "server_error"
	codeNotFound             = "not_found"
	codeMethodNotAllowed     = "method_not_allowed"
	codeIdempotencyKeyReused = "idempotency_key_reused"
	codeForbidden            = "forbidden"
	codeUnknownAuth          = "AUTH_ERROR"
)

// forbiddenMessage is the message of a 403 forbidden.
const forbiddenMessage = "This API key does not have permission to perform this action"

const (
	contentTypeJSON = "application/json"
	contentTypeHTML = "text/html; charset=utf-8"
)

// The statuses of payments and transfers.
const (
	statusPending    = "pending"
	statusSuccessful = "successful"
	statusFailed     = "failed"
)

// checkoutURLPrefix makes a checkout's URL. The reserved .invalid domain
// never resolves: the simulator serves no checkout page, its customers are
// modelled by [Checkout].
const checkoutURLPrefix = "https://checkout.spotflow.invalid/"

// badRequestBody is the shape of 400s: the code sits in "message".
//
//	{"error":"Bad Request","message":"missing_parameter","status":400}
type badRequestBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

// codeBody is the shape of 404, 422, 429 and 500.
//
//	{"code":"rate_limit_exceeded","message":"Too many requests"}
type codeBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// markedBody is the shape of authentication and permission errors.
//
//	{"code":"invalid_credentials","message":"Invalid API key","statusCode":401,"requestMarker":"..."}
type markedBody struct {
	Code          string `json:"code"`
	Message       string `json:"message"`
	StatusCode    int    `json:"statusCode"`
	RequestMarker string `json:"requestMarker"`
}

func badRequest(code string) []byte {
	return mustMarshal(badRequestBody{Error: "Bad Request", Message: code, Status: http.StatusBadRequest})
}

func coded(code, message string) []byte {
	return mustMarshal(codeBody{Code: code, Message: message})
}

func marked(code, message string, status int, marker string) []byte {
	return mustMarshal(markedBody{Code: code, Message: message, StatusCode: status, RequestMarker: marker})
}

// htmlError is what a proxy in front of the API sends when the API is down.
func htmlError(status int) []byte {
	return fmt.Appendf(nil, "<html><body><h1>%d %s</h1></body></html>", status, http.StatusText(status))
}

// paymentBody is the payment object of the API. A redirect checkout's
// payment also carries its checkoutUrl and paymentCode.
type paymentBody struct {
	ID          string            `json:"id"`
	Reference   string            `json:"reference"`
	Amount      int64             `json:"amount"`
	Currency    string            `json:"currency"`
	Status      string            `json:"status"`
	CheckoutURL string            `json:"checkoutUrl,omitempty"`
	PaymentCode string            `json:"paymentCode,omitempty"`
	Metadata    map[string]string `json:"metadata"`
}

// transferBody is the transfer object of the API.
type transferBody struct {
	ID          string            `json:"id"`
	Reference   string            `json:"reference"`
	Amount      int64             `json:"amount"`
	Currency    string            `json:"currency"`
	Status      string            `json:"status"`
	Destination map[string]string `json:"destination"`
	Metadata    map[string]string `json:"metadata"`
}

func paymentJSON(p *Payment) []byte {
	return mustMarshal(paymentBody{
		ID:          p.ID,
		Reference:   p.Reference,
		Amount:      p.Amount,
		Currency:    p.Currency,
		Status:      p.Status,
		CheckoutURL: p.CheckoutURL,
		PaymentCode: p.PaymentCode,
		Metadata:    nonNil(p.Metadata),
	})
}

func transferJSON(t *Transfer) []byte {
	return mustMarshal(transferBody{
		ID:          t.ID,
		Reference:   t.Reference,
		Amount:      t.Amount,
		Currency:    t.Currency,
		Status:      t.Status,
		Destination: nonNil(t.Destination),
		Metadata:    nonNil(t.Metadata),
	})
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// mustMarshal marshals the package's own body types, which cannot fail.
func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("spotflowtest: " + err.Error())
	}
	return b
}
