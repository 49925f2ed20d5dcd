package spotflowhttp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/jarcoal/httpmock"

	"github.com/spotflow-go/spotflowhttp"
)

// policyRows is the policy table of the README, row by row.
var policyRows = []struct {
	name      string
	status    int
	body      string
	code      string
	category  spotflowhttp.Category
	sentinel  error
	uncertain bool
}{
	{"missing_parameter", 400, `{"error":"Bad Request","message":"missing_parameter","status":400}`, "missing_parameter", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"invalid_credentials", 401, `{"code":"invalid_credentials","message":"Invalid API key","statusCode":401,"requestMarker":"m1"}`, "invalid_credentials", spotflowhttp.CategoryEscalate, spotflowhttp.ErrAuthentication, false},
	{"insufficient_balance", 400, `{"error":"Bad Request","message":"insufficient_balance","status":400}`, "insufficient_balance", spotflowhttp.CategoryEscalate, spotflowhttp.ErrInvalidRequest, false},
	{"duplicate_reference", 400, `{"error":"Bad Request","message":"duplicate_reference","status":400}`, "duplicate_reference", spotflowhttp.CategoryTreatAsSuccess, spotflowhttp.ErrInvalidRequest, false},
	{"rate_limit_exceeded", 429, `{"code":"rate_limit_exceeded","message":"Too many requests"}`, "rate_limit_exceeded", spotflowhttp.CategoryRetry, spotflowhttp.ErrRateLimit, false},
	{"server_error", 500, `{"code":"server_error","message":"Internal server error"}`, "server_error", spotflowhttp.CategoryRetry, spotflowhttp.ErrAPI, true},
	{"upper case code", 400, `{"code":"MISSING_PARAMETER","message":"Required field missing"}`, "MISSING_PARAMETER", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"400 no code", 400, ``, "", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"404 no code", 404, `{"message":"Payment not found"}`, "", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrNotFound, false},
	{"409 unknown code", 409, `{"code":"conflict_thing","message":"x"}`, "conflict_thing", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"422 html", 422, `<html>unprocessable</html>`, "", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"418 other 4xx", 418, `teapot`, "", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"401 unknown code", 401, `{"code":"AUTH_ERROR","message":"Unauthorized","statusCode":401,"requestMarker":"abc"}`, "AUTH_ERROR", spotflowhttp.CategoryEscalate, spotflowhttp.ErrAuthentication, false},
	{"401 empty", 401, ``, "", spotflowhttp.CategoryEscalate, spotflowhttp.ErrAuthentication, false},
	{"403 no code", 403, `{"message":"Forbidden"}`, "", spotflowhttp.CategoryEscalate, spotflowhttp.ErrPermission, false},
	{"429 no code", 429, ``, "", spotflowhttp.CategoryRetry, spotflowhttp.ErrRateLimit, false},
	{"500 no code", 500, `<html>oops</html>`, "", spotflowhttp.CategoryRetry, spotflowhttp.ErrAPI, true},
	{"502 proxy", 502, `<html><body><h1>502 Bad Gateway</h1></body></html>`, "", spotflowhttp.CategoryRetry, spotflowhttp.ErrAPI, true},
	{"503 proxy", 503, `<html><body><h1>503 Service Unavailable</h1></body></html>`, "", spotflowhttp.CategoryRetry, spotflowhttp.ErrAPI, true},
	{"504 empty", 504, ``, "", spotflowhttp.CategoryRetry, spotflowhttp.ErrAPI, true},
	{"501", 501, ``, "", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrAPI, false},
	{"505", 505, `{"code":"whatever"}`, "whatever", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrAPI, false},
	{"nested error object", 400, `{"error":{"code":"missing_parameter","message":"amount is required"}}`, "missing_parameter", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"truncated json", 400, `{"code":"duplicate_ref`, "", spotflowhttp.CategoryDontRetry, spotflowhttp.ErrInvalidRequest, false},
	{"code not a string", 429, `{"code":42,"message":["x"]}`, "", spotflowhttp.CategoryRetry, spotflowhttp.ErrRateLimit, false},
}

var allSentinels = []error{
	spotflowhttp.ErrInvalidRequest, spotflowhttp.ErrAuthentication, spotflowhttp.ErrPermission,
	spotflowhttp.ErrNotFound, spotflowhttp.ErrRateLimit, spotflowhttp.ErrAPI, spotflowhttp.ErrAPIConnection,
}

func checkRow(t *testing.T, e *spotflowhttp.Error, status int, code string, cat spotflowhttp.Category, sentinel error, uncertain bool) {
	t.Helper()
	if e == nil {
		t.Fatal("ErrorOf = nil, want an error")
	}
	if e.StatusCode != status || e.Code != code || e.Category != cat || e.Uncertain != uncertain {
		t.Errorf("got status %d code %q category %v uncertain %v; want %d %q %v %v",
			e.StatusCode, e.Code, e.Category, e.Uncertain, status, code, cat, uncertain)
	}
	for _, s := range allSentinels {
		if got, want := errors.Is(e, s), s == sentinel; got != want {
			t.Errorf("errors.Is(e, %v) = %v, want %v", s, got, want)
		}
	}
	if got := spotflowhttp.Classify(status, code); got != cat {
		t.Errorf("Classify(%d, %q) = %v, want %v", status, code, got, cat)
	}
}

func policyServer(t *testing.T, status int, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(body, "{") {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/html")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The policy table, on responses from a plain client (classified on the
// spot), through the stack over real HTTP, and through the stack over
// httpmock.
func TestPolicyTable(t *testing.T) {
	for _, row := range policyRows {
		t.Run(row.name, func(t *testing.T) {
			srv := policyServer(t, row.status, row.body)

			t.Run("plain client", func(t *testing.T) {
				resp, err := http.Get(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				checkRow(t, spotflowhttp.ErrorOf(resp), row.status, row.code, row.category, row.sentinel, row.uncertain)
				if b, _ := io.ReadAll(resp.Body); string(b) != row.body {
					t.Errorf("body after ErrorOf = %q, want %q", b, row.body)
				}
			})

			t.Run("through the stack", func(t *testing.T) {
				client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithMaxAttempts(1))}
				resp, err := client.Get(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != row.body {
					t.Errorf("body = %q, want %q", b, row.body)
				}
				e := spotflowhttp.ErrorOf(resp) // after the body was read and closed
				checkRow(t, e, row.status, row.code, row.category, row.sentinel, row.uncertain)
				if e.Attempts != 1 {
					t.Errorf("Attempts = %d, want 1", e.Attempts)
				}
			})

			t.Run("httpmock", func(t *testing.T) {
				mock := httpmock.NewMockTransport()
				mock.RegisterResponder("POST", "https://api.spotflow.co/api/v1/payments",
					httpmock.NewStringResponder(row.status, row.body))
				client := &http.Client{Transport: spotflowhttp.NewTransport(mock, spotflowhttp.WithMaxAttempts(1))}
				resp, err := client.Post("https://api.spotflow.co/api/v1/payments", "application/json", strings.NewReader(`{"amount":1}`))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				e := spotflowhttp.ErrorOf(resp)
				checkRow(t, e, row.status, row.code, row.category, row.sentinel, row.uncertain)
				if e.IdempotencyKey == "" || e.IdempotencyKey != spotflowhttp.IdempotencyKeyOf(resp) {
					t.Errorf("IdempotencyKey = %q, IdempotencyKeyOf = %q", e.IdempotencyKey, spotflowhttp.IdempotencyKeyOf(resp))
				}
			})
		})
	}
}

func TestSuccessIsNotAnError(t *testing.T) {
	for _, status := range []int{200, 201, 204, 302} {
		resp := &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader(`{"code":"server_error"}`))}
		if e := spotflowhttp.ErrorOf(resp); e != nil {
			t.Errorf("ErrorOf(%d) = %v, want nil", status, e)
		}
		if c := spotflowhttp.Classify(status, ""); c != spotflowhttp.CategoryNone {
			t.Errorf("Classify(%d) = %v", status, c)
		}
	}
	if spotflowhttp.ErrorOf(nil) != nil {
		t.Error("ErrorOf(nil) != nil")
	}
}

func TestCategoryString(t *testing.T) {
	want := map[spotflowhttp.Category]string{
		spotflowhttp.CategoryNone: "none", spotflowhttp.CategoryRetry: "retry", spotflowhttp.CategoryDontRetry: "dont_retry",
		spotflowhttp.CategoryEscalate: "escalate", spotflowhttp.CategoryTreatAsSuccess: "treat_as_success", 9: "Category(9)",
	}
	for c, s := range want {
		if c.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(c), c.String(), s)
		}
	}
}

func TestWithCodeCategory(t *testing.T) {
	srv := policyServer(t, 400, `{"code":"Card_Declined_Soft","message":"try later"}`)
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithCodeCategory("card_declined_soft", spotflowhttp.CategoryRetry),
		spotflowhttp.WithCodeCategory("missing_parameter", spotflowhttp.CategoryEscalate),
		spotflowhttp.WithMaxAttempts(3), spotflowhttp.WithBackoff(constantBackoff(0)))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	e := spotflowhttp.ErrorOf(resp)
	if e.Category != spotflowhttp.CategoryRetry || e.Attempts != 3 {
		t.Errorf("got %v after %d attempts, want retry after 3", e.Category, e.Attempts)
	}
	// The package-level policy is untouched.
	if c := spotflowhttp.Classify(400, "card_declined_soft"); c != spotflowhttp.CategoryDontRetry {
		t.Errorf("Classify = %v", c)
	}
}

// A 200 may describe a failed charge; WithResponseCheck lets the caller say
// so, and the body stays readable.
func TestWithResponseCheck(t *testing.T) {
	body := `{"status":"failed","code":"card_declined","message":"Do not honour"}`
	srv := policyServer(t, 200, body)
	var got []byte
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil, spotflowhttp.WithResponseCheck(
		func(resp *http.Response, b []byte) *spotflowhttp.Error {
			got = append([]byte(nil), b...)
			if bytes.Contains(b, []byte(`"status":"failed"`)) {
				return &spotflowhttp.Error{Code: "card_declined", Message: "Do not honour", Category: spotflowhttp.CategoryDontRetry}
			}
			return nil
		}))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != body || string(got) != body {
		t.Fatalf("body %q, check saw %q", b, got)
	}
	e := spotflowhttp.ErrorOf(resp)
	if e == nil || e.StatusCode != 200 || e.Code != "card_declined" || !errors.Is(e, spotflowhttp.ErrUnsuccessful) || e.Attempts != 1 {
		t.Fatalf("ErrorOf = %#v", e)
	}
}

// ErrorOf works when a transport outside the stack (otelhttp, a logger)
// wraps the body, and after the body was read and closed.
func TestErrorOfWrappedBody(t *testing.T) {
	srv := policyServer(t, 429, `{"code":"rate_limit_exceeded","message":"Too many requests"}`)
	inner := spotflowhttp.NewTransport(nil, spotflowhttp.WithMaxAttempts(1))
	wrapping := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := inner.RoundTrip(r)
		if err == nil {
			resp.Body = io.NopCloser(io.MultiReader(resp.Body)) // what otelhttp does, in spirit
		}
		return resp, err
	})
	resp, err := (&http.Client{Transport: wrapping}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	e := spotflowhttp.ErrorOf(resp)
	if e == nil || e.Code != "rate_limit_exceeded" || !errors.Is(e, spotflowhttp.ErrRateLimit) {
		t.Fatalf("ErrorOf = %v", e)
	}
}

// Classification reads at most 64 KiB of a body, and the caller still gets
// every byte.
func TestErrorOfBoundedRead(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 10<<20)
	body := newReadCloseCounter(bytes.NewReader(big))
	resp := &http.Response{StatusCode: 500, Body: body, Header: http.Header{}}
	e := spotflowhttp.ErrorOf(resp)
	if e == nil || e.Category != spotflowhttp.CategoryRetry {
		t.Fatalf("ErrorOf = %v", e)
	}
	if n := body.bytes.Load(); n > 64<<10+512 {
		t.Errorf("read %d bytes to classify, want at most 64 KiB", n)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(rest, big) {
		t.Errorf("body after ErrorOf: %d bytes, err %v; want all %d", len(rest), err, len(big))
	}
	resp.Body.Close()
	if body.closes.Load() != 1 {
		t.Errorf("closes = %d, want 1", body.closes.Load())
	}
}

func TestConnectionErrorIsTyped(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) { return nil, reset })
	client := &http.Client{Transport: spotflowhttp.NewTransport(base, spotflowhttp.WithMaxAttempts(1))}
	_, err := client.Post("https://api.spotflow.co/api/v1/payments", "application/json", strings.NewReader(`{}`))
	var e *spotflowhttp.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	var opErr *net.OpError
	if !errors.Is(err, spotflowhttp.ErrAPIConnection) || !errors.As(err, &opErr) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("err = %v: want ErrAPIConnection wrapping the *net.OpError", err)
	}
	if !e.Uncertain || e.IdempotencyKey == "" || e.Attempts != 1 || e.StatusCode != 0 {
		t.Errorf("got %#v", e)
	}
}

func TestErrorString(t *testing.T) {
	e := &spotflowhttp.Error{StatusCode: 429, Code: "rate_limit_exceeded", Message: "Too many requests",
		Category: spotflowhttp.CategoryRetry, Attempts: 4, IdempotencyKey: "k1"}
	want := "spotflow: 429 rate_limit_exceeded: Too many requests (retry, 4 attempts, key k1)"
	if e.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", e.Error(), want)
	}
	conn := &spotflowhttp.Error{Category: spotflowhttp.CategoryRetry, Attempts: 1, Uncertain: true, Err: context.DeadlineExceeded}
	if got := conn.Error(); got != "spotflow: connection error: context deadline exceeded (retry, outcome uncertain, 1 attempt)" {
		t.Errorf("Error() = %q", got)
	}
}

// The secret key never shows in an error, a %+v, a log line or a hook.
func TestSecretNeverLeaks(t *testing.T) {
	const secret = "sk_live_0123456789abcdefSECRET"
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		switch calls {
		case 1:
			w.WriteHeader(503)
		default:
			w.WriteHeader(401)
			io.WriteString(w, `{"code":"invalid_credentials","message":"Invalid API key","statusCode":401}`)
		}
	}))
	defer srv.Close()
	var logs bytes.Buffer
	var hooks []string
	client := &http.Client{Transport: spotflowhttp.NewTransport(nil,
		spotflowhttp.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		spotflowhttp.WithBackoff(constantBackoff(0)), spotflowhttp.WithErrors(), spotflowhttp.WithHaltOnEscalate(),
		spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) { hooks = append(hooks, fmt.Sprintf("%+v", ev)) }),
		spotflowhttp.WithOnEscalate(func(_ context.Context, e *spotflowhttp.Error) { hooks = append(hooks, fmt.Sprintf("%+v %#v", e, e)) }),
	)}
	var errs []string
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/payments?x=1", strings.NewReader(`{"amount":1}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		_, err := client.Do(req)
		if err == nil {
			t.Fatal("want an error")
		}
		var e *spotflowhttp.Error
		errors.As(err, &e)
		errs = append(errs, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
	}
	all := strings.Join(errs, "\n") + logs.String() + strings.Join(hooks, "\n")
	if strings.Contains(all, "SECRET") || strings.Contains(all, "sk_live") {
		t.Fatalf("secret leaked:\n%s", all)
	}
	if !strings.Contains(logs.String(), "retry") || !strings.Contains(logs.String(), "escalate") || len(hooks) < 2 {
		t.Fatalf("expected retry and escalation logs and hooks; logs:\n%s\nhooks: %v", logs.String(), hooks)
	}
}

func FuzzErrorBody(f *testing.F) {
	for _, row := range policyRows {
		f.Add(row.status, []byte(row.body))
	}
	f.Add(400, []byte(`{"error":{"code":1}}`))
	f.Add(500, bytes.Repeat([]byte("{"), 70<<10))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		status = 400 + abs(status)%200
		counter := newReadCloseCounter(bytes.NewReader(body))
		resp := &http.Response{StatusCode: status, Body: counter, Header: http.Header{"Retry-After": {string(body[:min(len(body), 40)])}}}
		e := spotflowhttp.ErrorOf(resp)
		if e == nil || e.Category == spotflowhttp.CategoryNone {
			t.Fatalf("status %d: ErrorOf = %v", status, e)
		}
		if n := counter.bytes.Load(); n > 64<<10+1 {
			t.Fatalf("read %d bytes", n)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("body not preserved: %d of %d bytes, %v", len(got), len(body), err)
		}
		_ = e.Error()
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
