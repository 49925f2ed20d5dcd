package spotflowhttp

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Category is the recovery category Spotflow assigns to a failure: what a
// client should do about it. The zero value, CategoryNone, means "not an
// error".
type Category int

// The four recovery categories of Spotflow's "Error Codes" page, plus
// CategoryNone for success.
const (
	// CategoryNone: the call succeeded; nothing to recover from.
	CategoryNone Category = iota
	// CategoryRetry: wait and retry the same request with exponential
	// backoff. The retry transport does this for requests that are safe to
	// repeat.
	CategoryRetry
	// CategoryDontRetry: the request will never succeed as sent; fix the
	// input.
	CategoryDontRetry
	// CategoryEscalate: a human needs to act (rotate a key, top up the
	// balance, grant a permission) before the request can succeed.
	CategoryEscalate
	// CategoryTreatAsSuccess: the resource already exists; fetch it instead
	// of creating it again.
	CategoryTreatAsSuccess
)

// String returns none, retry, dont_retry, escalate or treat_as_success.
func (c Category) String() string {
	switch c {
	case CategoryNone:
		return "none"
	case CategoryRetry:
		return "retry"
	case CategoryDontRetry:
		return "dont_retry"
	case CategoryEscalate:
		return "escalate"
	case CategoryTreatAsSuccess:
		return "treat_as_success"
	}
	return "Category(" + strconv.Itoa(int(c)) + ")"
}

// Sentinel errors, one per error type Spotflow documents. An [*Error]
// matches exactly one of them, or [ErrUnsuccessful], with [errors.Is].
var (
	// ErrInvalidRequest is Spotflow::InvalidRequestError: 400, 409, 422 and
	// other 4xx statuses without a more specific type.
	ErrInvalidRequest = errors.New("spotflow: invalid request")
	// ErrAuthentication is Spotflow::AuthenticationError (401).
	ErrAuthentication = errors.New("spotflow: authentication failed")
	// ErrPermission is Spotflow::PermissionError (403).
	ErrPermission = errors.New("spotflow: permission denied")
	// ErrNotFound is a 404: the resource or endpoint does not exist.
	ErrNotFound = errors.New("spotflow: not found")
	// ErrRateLimit is Spotflow::RateLimitError: a 429 from the server, or a
	// request the client-side rate limiter refused to send.
	ErrRateLimit = errors.New("spotflow: rate limited")
	// ErrAPI is Spotflow::APIError: a 5xx from Spotflow's side.
	ErrAPI = errors.New("spotflow: API error")
	// ErrAPIConnection is Spotflow::APIConnectionError: no response was
	// obtained. Whether the request took effect may be unknown; see
	// Error.Uncertain.
	ErrAPIConnection = errors.New("spotflow: connection error")
)

// Error describes a failed Spotflow call: what the response or transport
// error was, which recovery category it falls in, how many attempts were
// made and with which idempotency key.
//
// An *Error is returned by RoundTrip only for failures without a response
// (connection errors, a refused rate-limit wait, a halted [Transport]) or
// when [WithErrors] is set; otherwise the final response is returned and
// [ErrorOf] gives its *Error. Treat an *Error as read-only once returned; it
// is then safe to read from any goroutine.
type Error struct {
	// StatusCode is the HTTP status of the final response, 0 if none.
	StatusCode int
	// Code is Spotflow's error code as sent (for example
	// "rate_limit_exceeded"), "" if the body carried none.
	Code string
	// Message is the human-readable message from the body, if any.
	Message string
	// Category is the recovery category.
	Category Category
	// Attempts is how many times the request was sent, retries included.
	// It is 0 when the request was never sent.
	Attempts int
	// IdempotencyKey is the key the call carried, "" if none. Use it to
	// resolve an uncertain outcome (verify endpoint, webhook, or the same
	// call again with [ContextWithIdempotencyKey]).
	IdempotencyKey string
	// Uncertain reports that the request may have taken effect although no
	// success was seen: a connection error after the request may have been
	// sent, or a 500, 502, 503 or 504, on the final attempt or an earlier
	// one. A call whose attempts all got other answers is not uncertain.
	Uncertain bool
	// RetryAfter is the wait the final response's Retry-After header asked
	// for (either form), or, for a request the rate limiter refused, the
	// time left until it may be sent. 0 if none.
	RetryAfter time.Duration
	// Err is the underlying error, if any: a [net.Error],
	// [context.Canceled], [context.DeadlineExceeded], a limiter's error.
	Err error

	kind   error // the sentinel; nil means "derive from StatusCode"
	local  bool  // made by this package before sending; Attempts counts what was sent
	unread bool  // the response could not be read: the call fails with this error instead
}

// Error returns one line: status, code, message, category and attempts. It
// never contains request headers, so no secret key can appear in it.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("spotflow: ")
	if e.StatusCode != 0 {
		b.WriteString(strconv.Itoa(e.StatusCode))
	} else {
		b.WriteString(strings.TrimPrefix(e.sentinel().Error(), "spotflow: "))
	}
	if e.Code != "" {
		b.WriteByte(' ')
		b.WriteString(e.Code)
	}
	if e.Message != "" && !strings.EqualFold(e.Message, e.Code) {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	b.WriteString(" (")
	b.WriteString(e.Category.String())
	if e.Uncertain {
		b.WriteString(", outcome uncertain")
	}
	b.WriteString(", ")
	b.WriteString(strconv.Itoa(e.Attempts))
	if e.Attempts == 1 {
		b.WriteString(" attempt")
	} else {
		b.WriteString(" attempts")
	}
	if e.IdempotencyKey != "" {
		b.WriteString(", key ")
		b.WriteString(e.IdempotencyKey)
	}
	b.WriteByte(')')
	return b.String()
}

// Is reports whether target is the sentinel of e's error type, so that
// errors.Is(err, ErrRateLimit) works.
func (e *Error) Is(target error) bool { return target != nil && target == e.sentinel() }

// Unwrap returns Err, so errors.Is and errors.As reach the underlying
// network or context error.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) sentinel() error {
	if e.kind != nil {
		return e.kind
	}
	return sentinelFor(e.StatusCode)
}

// sentinelFor maps a status to its error type; 0 means no response.
func sentinelFor(status int) error {
	switch {
	case status == 0:
		return ErrAPIConnection
	case status == 401:
		return ErrAuthentication
	case status == 403:
		return ErrPermission
	case status == 404:
		return ErrNotFound
	case status == 429:
		return ErrRateLimit
	case status >= 500:
		return ErrAPI
	}
	return ErrInvalidRequest
}

var errBurstZero = errors.New("spotflowhttp: rate limiter has burst 0 and admits nothing")
