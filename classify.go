package spotflowhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxClassifyBody bounds how much of a response body is read to find
// Spotflow's error code. Error bodies are small; a larger one is classified
// by whatever its first 64 KiB say (or by its status).
const maxClassifyBody = 64 << 10

// Spotflow's documented error codes.
const (
	codeMissingParameter    = "missing_parameter"
	codeInvalidCredentials  = "invalid_credentials"
	codeInsufficientBalance = "insufficient_balance"
	codeDuplicateReference  = "duplicate_reference"
	codeRateLimitExceeded   = "rate_limit_exceeded"
	codeServerError         = "server_error"
)

// defaultCodes is the Error Reference table of Spotflow's "Error Codes"
// page. Keys are lower case; codes are matched case-insensitively.
var defaultCodes = map[string]Category{
	codeMissingParameter:    CategoryDontRetry,
	codeInvalidCredentials:  CategoryEscalate,
	codeInsufficientBalance: CategoryEscalate,
	codeDuplicateReference:  CategoryTreatAsSuccess,
	codeRateLimitExceeded:   CategoryRetry,
	codeServerError:         CategoryRetry,
}

// codeSentinels gives the error type of codes whose type does not follow
// from the status they usually come with.
var codeSentinels = map[string]error{
	codeInvalidCredentials: ErrAuthentication,
	codeRateLimitExceeded:  ErrRateLimit,
	codeServerError:        ErrAPI,
}

// Classify is Spotflow's error policy as a pure lookup: the recovery
// category of a response with the given status and error code. A known code
// (matched case-insensitively) decides; otherwise the status does: 2xx and
// 3xx are CategoryNone, 401 and 403 escalate, 429 and 500/502/503/504 are
// retried, other 4xx and 5xx are not. Classify uses the default table; a
// Transport built WithCodeCategory consults its own entries first.
func Classify(statusCode int, code string) Category {
	return classify(nil, statusCode, code)
}

func classify(extra map[string]Category, status int, code string) Category {
	if code != "" {
		lc := strings.ToLower(code)
		if c, ok := extra[lc]; ok {
			return c
		}
		if c, ok := defaultCodes[lc]; ok {
			return c
		}
	}
	switch {
	case status < 400:
		return CategoryNone
	case status == 401, status == 403:
		return CategoryEscalate
	case status == 429:
		return CategoryRetry
	case status == 500, status == 502, status == 503, status == 504:
		return CategoryRetry
	}
	return CategoryDontRetry
}

// WithCodeCategory adds or overrides the category of an error code (matched
// case-insensitively), for codes Spotflow adds later or a policy of your
// own. It may be given several times. It panics if code is empty or c is
// not one of the five categories. Every layer that classifies reads it:
// [Transport], [IdempotencyTransport] and [RetryTransport]. [Classify]
// does not: it is the default table.
func WithCodeCategory(code string, c Category) Option {
	checkCodeCategory(code, c)
	return optionFunc(func(cfg *config) {
		m := make(map[string]Category, len(cfg.codes)+1)
		for k, v := range cfg.codes {
			m[k] = v
		}
		m[strings.ToLower(code)] = c
		cfg.codes = m
	})
}

// ErrUnsuccessful is the error type of a 2xx response that a check given to
// [WithResponseCheck] reported as a failure, such as a 200 describing a
// failed charge.
var ErrUnsuccessful = errors.New("spotflow: request processed but unsuccessful")

// WithResponseCheck installs check to look into 2xx responses, because
// Spotflow may answer 200 for a charge that failed (the body's "status"
// says so). check receives the response and up to 64 KiB of its body; the
// response body stays readable with the same bytes. A non-nil [*Error] it
// returns (Code, Message, Category and Err are kept; status, attempts and
// key are filled in) makes [ErrorOf] report the response as failed, matching
// [ErrUnsuccessful], and is retried if its Category is [CategoryRetry] and
// the request is safe to repeat. check must be safe for concurrent use and
// must not keep body. The default, and a nil check, looks at no 2xx body.
// Every layer that classifies reads it: [Transport],
// [IdempotencyTransport] and [RetryTransport].
func WithResponseCheck(check func(resp *http.Response, body []byte) *Error) Option {
	return optionFunc(func(cfg *config) { cfg.check = check })
}

// ErrorOf returns the [*Error] describing resp, or nil if resp is a success.
//
// For a response that came through this package's transports it returns the
// annotation made when the response was received, with attempts and
// idempotency key, even if another RoundTripper has since wrapped the body
// or the caller has read and closed it. For any other response it classifies
// on the spot from the status and at most 64 KiB of the body, and leaves
// resp.Body readable with the same bytes; do not call it concurrently with a
// read of resp.Body.
func ErrorOf(resp *http.Response) *Error {
	if resp == nil {
		return nil
	}
	if c := callOf(resp.Request); c != nil && c.resp == resp {
		return c.err
	}
	if resp.StatusCode < 400 {
		return nil
	}
	e := classifyResponse(nil, resp)
	e.Attempts = 1
	if resp.Request != nil {
		e.IdempotencyKey = headerKey(resp.Request.Header, "")
	}
	return e
}

// classifyResponse annotates a response: nil for a success, else an *Error
// without attempts and key. It reads at most maxClassifyBody bytes of an
// error body and puts them back in front of the rest.
func classifyResponse(cfg *config, resp *http.Response) *Error {
	var check func(*http.Response, []byte) *Error
	var codes map[string]Category
	if cfg != nil {
		check, codes = cfg.check, cfg.codes
	}
	if resp.StatusCode < 400 {
		if check == nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
			return nil
		}
		body, err := peekBody(resp)
		if err != nil {
			// The check cannot judge a body that could not be read: the
			// call fails with the read error, the request processed.
			discard(resp)
			if cerr := contextErr(resp); cerr != nil && !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (%w)", err, cerr)
			}
			return &Error{
				StatusCode: resp.StatusCode,
				Category:   CategoryRetry,
				Uncertain:  true,
				Err:        fmt.Errorf("spotflowhttp: reading the response for WithResponseCheck: %w", err),
				kind:       ErrAPIConnection,
				unread:     true,
			}
		}
		var e *Error
		callOf(resp.Request).hook(func() { e = check(resp, body) })
		if e == nil {
			return nil
		}
		c := *e
		c.StatusCode = resp.StatusCode
		if c.kind == nil {
			c.kind = ErrUnsuccessful
		}
		return &c
	}
	body, _ := peekBody(resp) // a read error is the caller's to meet when it reads on
	code, msg := parseErrorBody(body)
	e := &Error{
		StatusCode: resp.StatusCode,
		Code:       code,
		Message:    msg,
		Category:   classify(codes, resp.StatusCode, code),
		Uncertain:  uncertainStatus(resp.StatusCode),
		kind:       codeSentinels[strings.ToLower(code)],
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now(cfg)); ok {
		e.RetryAfter = d
	}
	return e
}

// uncertainStatus reports the statuses after which the request may have
// taken effect on Spotflow's side.
func uncertainStatus(status int) bool {
	return status == 500 || status == 502 || status == 503 || status == 504
}

func now(cfg *config) time.Time {
	if cfg != nil && cfg.clock != nil {
		return cfg.clock.Now()
	}
	return time.Now()
}

// peekBody reads up to maxClassifyBody bytes of resp.Body and replaces the
// body with one that yields the same bytes again, then the rest, or the
// error the read met. A body read to its end is closed at once, so its
// connection goes back to the pool even if the caller never closes the
// response.
func peekBody(resp *http.Response) ([]byte, error) {
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil, nil
	}
	orig := resp.Body
	buf, err := io.ReadAll(io.LimitReader(orig, maxClassifyBody+1))
	if err == nil && len(buf) <= maxClassifyBody {
		orig.Close()
		resp.Body = &bytesBody{Reader: bytes.NewReader(buf)}
		return buf, nil
	}
	rest := orig.(io.Reader)
	if err != nil {
		rest = errReader{err}
	}
	resp.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf), rest), Closer: orig}
	if len(buf) > maxClassifyBody {
		buf = buf[:maxClassifyBody]
	}
	return buf, err
}

// contextErr is the error of the context of resp's request, if it is done.
func contextErr(resp *http.Response) error {
	if resp.Request == nil {
		return nil
	}
	return resp.Request.Context().Err()
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// bytesBody is a fully read response body.
type bytesBody struct{ *bytes.Reader }

func (*bytesBody) Close() error { return nil }

// prefixedBody is a body whose first bytes were read for classification.
type prefixedBody struct {
	io.Reader
	io.Closer
}

// errorBody holds the fields of the error body shapes Spotflow sends:
//
//	{"error":"Bad Request","message":"missing_parameter","status":400}
//	{"code":"rate_limit_exceeded","message":"Too many requests"}
//	{"code":"AUTH_ERROR","message":"...","statusCode":401,"requestMarker":"..."}
//	{"error":{"code":"...","message":"..."}}
type errorBody struct {
	Code    json.RawMessage `json:"code"`
	Message json.RawMessage `json:"message"`
	Error   json.RawMessage `json:"error"`
}

// parseErrorBody finds the error code and message in a Spotflow error body.
// Anything that is not a JSON object yields no code.
func parseErrorBody(b []byte) (code, message string) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return "", ""
	}
	var eb errorBody
	if json.Unmarshal(b, &eb) != nil {
		return "", ""
	}
	code, message = jsonString(eb.Code), jsonString(eb.Message)
	errText := jsonString(eb.Error)
	if len(eb.Error) > 0 && eb.Error[0] == '{' {
		var inner errorBody
		if json.Unmarshal(eb.Error, &inner) == nil {
			if code == "" {
				code = jsonString(inner.Code)
			}
			if message == "" {
				message = jsonString(inner.Message)
			}
		}
	}
	// {"error":"Bad Request","message":"missing_parameter"}: the code sits
	// in message and the description in error.
	if code == "" && looksLikeCode(message) {
		code, message = message, errText
	}
	if message == "" {
		message = errText
	}
	return code, message
}

func jsonString(raw json.RawMessage) string {
	if len(raw) == 0 || raw[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// looksLikeCode reports whether s has the shape of an error code
// (snake_case or SCREAMING_CASE, no spaces), as opposed to a sentence.
func looksLikeCode(s string) bool {
	if len(s) == 0 || len(s) > 64 || !strings.Contains(s, "_") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
