package spotflowtest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// TestMain fails the run if any test left a server or connection goroutine
// behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines polls, up to wait, until no goroutine is running server
// or client connection code, and returns the stacks of those still there.
func leakedGoroutines(wait time.Duration) string {
	suspects := []string{
		"net/http.(*conn).serve",
		"net/http.(*persistConn)",
		"net/http/httptest.(*Server)",
		"spotflowtest.(*Server)",
		"spotflowtest.(*webhookSender)",
	}
	deadline := time.Now().Add(wait)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, s := range suspects {
				if strings.Contains(g, s) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness sends requests to a server and closes both when the test ends.
type harness struct {
	t      testing.TB
	s      *spotflowtest.Server
	client *http.Client
}

// newHarness starts a server. Its client opens a fresh connection per
// request: on a reused connection net/http silently resends a request that
// carries an Idempotency-Key when the connection is reset, which would hide
// the resets under test.
func newHarness(t testing.TB, opts ...spotflowtest.Option) *harness {
	t.Helper()
	s := spotflowtest.NewServer(opts...)
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(func() {
		s.Close()
		tr.CloseIdleConnections()
	})
	return &harness{t: t, s: s, client: &http.Client{Transport: tr}}
}

type result struct {
	status int
	header http.Header
	body   string
	err    error
}

func (r result) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d %s", r.status, r.body)
}

// do sends a request with the server's key. headers are name, value pairs;
// an "Authorization" pair replaces the default, and an empty value removes
// the header.
func (h *harness) do(method, path, body string, headers ...string) result {
	return h.doContext(context.Background(), method, path, body, headers...)
}

func (h *harness) doContext(ctx context.Context, method, path, body string, headers ...string) result {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.s.BaseURL()+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.s.SecretKey())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

func paymentBody(reference string, amount int64, orderID string) string {
	ref := ""
	if reference != "" {
		ref = fmt.Sprintf(`"reference":%q,`, reference)
	}
	return fmt.Sprintf(`{%s"amount":%d,"currency":"NGN","customer":{"email":"a@b.c"},"metadata":{"order_id":%q}}`, ref, amount, orderID)
}

func transferBody(reference string, amount int64) string {
	return fmt.Sprintf(`{"reference":%q,"amount":%d,"currency":"NGN","destination":{"bankCode":"058","accountNumber":"0123456789"}}`, reference, amount)
}
