package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
	"github.com/spotflow-go/spotflowhttp/webhook"
	"go.uber.org/goleak"
)

// binary is spotflow-mock, built once by TestMain, run by every test as a
// user would run it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spotflow-mock-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "spotflow-mock")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// The in-process servers, the webhook receivers and the goroutines
		// that wait for the binaries have all ended.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// startTimeout bounds how long the binary may take to print its lines,
// and stopTimeout how long it may take to exit after a signal; both are
// far above what they take on an idle machine (milliseconds) so that a
// loaded one does not fail the tests.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 20 * time.Second
)

// lockedBuffer is a bytes.Buffer safe for the exec goroutine that writes
// stderr and the test that reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// mock is a running spotflow-mock.
type mock struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *lockedBuffer
	lines  []string // the stdout lines read by start
	rest   []byte   // the rest of stdout, once exited is closed
	base   string   // line 1: the API's base URL
	root   string   // base without /api/v1, where /_mock lives
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startMock runs the binary with args and env added to the test's
// environment, and reads n lines from its stdout. The process is killed at
// the end of the test if it is still running.
func startMock(t *testing.T, n int, env []string, args ...string) *mock {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	m := &mock{cmd: cmd, stdout: bufio.NewReader(out), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = m.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for range n {
			line, err := m.stdout.ReadString('\n')
			if err != nil {
				read <- err
				return
			}
			m.lines = append(m.lines, strings.TrimSuffix(line, "\n"))
		}
		read <- nil
		m.rest, _ = io.ReadAll(m.stdout) // until the process exits
	}()
	go func() {
		<-readDone // Wait closes the pipe: the reads come first
		m.err = cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-m.exited:
		default:
			_ = cmd.Process.Kill()
			<-m.exited
		}
	})
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("reading the first %d lines of stdout: %v; stderr:\n%s", n, err, m.stderr)
		}
	case <-time.After(startTimeout):
		t.Fatalf("no %d lines on stdout after %v; stderr:\n%s", n, startTimeout, m.stderr)
	}
	m.base = m.lines[0]
	m.root = strings.TrimSuffix(m.base, spotflowtest.APIPrefix)
	return m
}

// stop sends sig and returns the exit status and what the binary printed
// on stdout after the lines start read.
func (m *mock) stop(t *testing.T, sig os.Signal) (int, string) {
	t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("still running %v after %v; stderr:\n%s", stopTimeout, sig, m.stderr)
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(m.err, &exit) {
		code = exit.ExitCode()
	} else if m.err != nil {
		t.Fatal(m.err)
	}
	return code, string(m.rest)
}

// runMock runs the binary to its end, for the cases that exit at once.
func runMock(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// call is one request to a server, by path under its base URL.
type call struct {
	name, method, path, key, idemKey, body string
}

// answer is what came back, with the headers that matter.
type answer struct {
	status  int
	body    string
	headers map[string]string
}

// mattering are the headers that must be the same from the binary and the
// in-process server; the time-based ones are checked apart.
var mattering = []string{"Content-Type", "Content-Length", "Idempotent-Replayed", "Allow", "X-Ratelimit-Limit", "X-Ratelimit-Remaining"}

var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

func do(t *testing.T, base string, c call) answer {
	t.Helper()
	a, err := tryDo(t, base, c)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return a
}

// tryDo is do for a goroutine other than the test's: it returns the error
// instead of failing the test.
func tryDo(t *testing.T, base string, c call) (answer, error) {
	req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		return answer{}, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if c.idemKey != "" {
		req.Header.Set("Idempotency-Key", c.idemKey)
	}
	req.Header.Set("Content-Type", "application/json")
	sent := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, body: string(body), headers: map[string]string{}}
	for _, h := range mattering {
		a.headers[h] = resp.Header.Get(h)
	}
	checkTimeHeaders(t, c.name, resp.Header, sent)
	return a, nil
}

// checkTimeHeaders checks the headers that depend on when the request was
// answered: Retry-After within the minute of the test's 1/min limit, and
// X-RateLimit-Reset a Unix second between the request and a full bucket.
func checkTimeHeaders(t *testing.T, name string, h http.Header, sent time.Time) {
	t.Helper()
	if v := h.Get("Retry-After"); v != "" {
		var secs int
		if _, err := fmt.Sscan(v, &secs); err != nil || secs < 1 || secs > 60 {
			t.Errorf("%s: Retry-After = %q, want 1 to 60 seconds", name, v)
		}
	}
	if v := h.Get("X-Ratelimit-Reset"); v != "" {
		var reset int64
		_, err := fmt.Sscan(v, &reset)
		if err != nil || reset < sent.Unix()-1 || reset > time.Now().Unix()+int64(burst)*60+1 {
			t.Errorf("%s: X-RateLimit-Reset = %q, want a Unix second from now until the bucket is full", name, v)
		}
	}
}

const (
	seedFlag      = "7"
	seed          = 7
	secretKey     = "sk_test_equivalence"
	restrictedKey = "sk_test_reader"
	burst         = 8 // the calls below that pass authentication, but the last
)

func payment(ref string) string {
	return `{"reference":"` + ref + `","amount":5000,"currency":"NGN","customer":{"email":"ada@example.com"},"metadata":{"order_id":"` + ref + `"}}`
}

// TestAnswersAsSpotflowtest sends the same calls to the binary and to an
// in-process spotflowtest server configured as the flags say, and requires
// the same status, headers and body from both, byte for byte: ids,
// references, request markers and faults come from the seed. In the first
// configuration the rate limit (1/min, burst 8) makes the last call a 429;
// the second has scheduled faults on creates and reads, checkouts that
// stay pending and a small balance.
func TestAnswersAsSpotflowtest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		opts       []spotflowtest.Option
		calls      []call
		lastStatus int // of the last call, so that the sequence is known to reach it
	}{
		{
			name: "keys, references, rate limit",
			args: []string{"-restricted-key", restrictedKey, "-rate-limit", "1/min", "-burst", fmt.Sprint(burst)},
			opts: []spotflowtest.Option{spotflowtest.WithRestrictedKey(restrictedKey), spotflowtest.WithRateLimit(1.0/60, burst)},
			calls: []call{
				{"keyed payment", "POST", "/payments", secretKey, "k-1", payment("order-1")},
				{"keyed payment again", "POST", "/payments", secretKey, "k-1", payment("order-1")},
				{"duplicate reference", "POST", "/payments", secretKey, "k-2", payment("order-1")},
				{"key reused, other body", "POST", "/payments", secretKey, "k-1", payment("order-2")},
				{"bad key", "POST", "/payments", "sk_test_wrong", "k-3", payment("order-3")},
				{"no key", "GET", "/payments/verify?reference=order-1", "", "", ""},
				{"verify", "GET", "/payments/verify?reference=order-1", secretKey, "", ""},
				{"verify unknown", "GET", "/payments/verify?reference=nope", secretKey, "", ""},
				{"missing parameter", "POST", "/payments", secretKey, "", `{"amount":5000}`},
				{"restricted key creates", "POST", "/transfers", restrictedKey, "", `{"amount":100,"currency":"NGN"}`},
				{"restricted key verifies", "GET", "/payments/verify?reference=order-1", restrictedKey, "", ""},
				{"transfer", "POST", "/transfers", secretKey, "t-1", `{"reference":"tr-1","amount":100,"currency":"NGN"}`},
				{"rate limited", "GET", "/transfers/reference/tr-1", secretKey, "", ""},
			},
			lastStatus: http.StatusTooManyRequests,
		},
		{
			name: "faults, checkouts, balance",
			args: []string{"-faults", "schedule=server_error_after:proxy_error,reads=true", "-checkout-delay", "1h", "-balance", "1000"},
			opts: []spotflowtest.Option{
				spotflowtest.WithFaults(spotflowtest.Faults{Reads: true, Schedule: []spotflowtest.Fault{spotflowtest.FaultServerErrorAfterCommit, spotflowtest.FaultProxyError}}),
				spotflowtest.WithCheckout(spotflowtest.Checkout{Delay: time.Hour}),
				spotflowtest.WithBalance(1000),
			},
			calls: []call{
				{"500 after commit", "POST", "/payments", secretKey, "k-1", payment("order-1")},
				{"proxy error", "POST", "/payments", secretKey, "k-1", payment("order-1")},
				{"replayed", "POST", "/payments", secretKey, "k-1", payment("order-1")},
				{"checkout, 500", "POST", "/payments/initialize", secretKey, "", payment("chk-1")},
				{"verify, 500", "GET", "/payments/verify?reference=chk-1", secretKey, "", ""},
				{"verify, proxy error", "GET", "/payments/verify?reference=chk-1", secretKey, "", ""},
				{"verify, pending", "GET", "/payments/verify?reference=chk-1", secretKey, "", ""},
				{"insufficient balance", "POST", "/transfers", secretKey, "", `{"reference":"tr-1","amount":2000,"currency":"NGN"}`},
			},
			lastStatus: http.StatusBadRequest,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := spotflowtest.NewServer(append([]spotflowtest.Option{spotflowtest.WithSecretKey(secretKey), spotflowtest.WithSeed(seed)}, tc.opts...)...)
			defer sim.Close()
			m := startMock(t, 1, nil, append([]string{"-secret-key", secretKey, "-seed", seedFlag}, tc.args...)...)
			var got answer
			for _, c := range tc.calls {
				want := do(t, sim.BaseURL(), c)
				got = do(t, m.base, c)
				if got.status != want.status || got.body != want.body {
					t.Errorf("%s: binary answered %d %s\nspotflowtest answered %d %s", c.name, got.status, got.body, want.status, want.body)
				}
				for _, h := range mattering {
					if got.headers[h] != want.headers[h] {
						t.Errorf("%s: %s = %q from the binary, %q from spotflowtest", c.name, h, got.headers[h], want.headers[h])
					}
				}
			}
			if got.status != tc.lastStatus {
				t.Errorf("last call: status %d, want %d", got.status, tc.lastStatus)
			}
			if code, _ := m.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
		})
	}
}

// TestAnswersCoverTheCases checks that the calls of
// TestAnswersAsSpotflowtest produce the cases the issue names, so that the
// comparison cannot pass by comparing two servers that both refuse
// everything.
func TestAnswersCoverTheCases(t *testing.T) {
	m := startMock(t, 1, []string{"SPOTFLOW_MOCK_SECRET_KEY=" + secretKey}, "-seed", seedFlag, "-restricted-key", restrictedKey)
	for _, tc := range []struct {
		c      call
		status int
		body   *regexp.Regexp
	}{
		{call{"keyed payment", "POST", "/payments", secretKey, "k-1", payment("order-1")}, 201, regexp.MustCompile(`^\{"id":"pay_[0-9a-f]{16}","reference":"order-1",.*"status":"successful"`)},
		{call{"duplicate reference", "POST", "/payments", secretKey, "k-2", payment("order-1")}, 400, regexp.MustCompile(`"message":"duplicate_reference"`)},
		{call{"bad key", "POST", "/payments", "sk_test_wrong", "", payment("order-3")}, 401, regexp.MustCompile(`"code":"invalid_credentials"`)},
		{call{"restricted key", "POST", "/payments", restrictedKey, "", payment("order-4")}, 403, regexp.MustCompile(`"code":"forbidden"`)},
		{call{"verify", "GET", "/payments/verify?reference=order-1", secretKey, "", ""}, 200, regexp.MustCompile(`"reference":"order-1"`)},
	} {
		a := do(t, m.base, tc.c)
		if a.status != tc.status || !tc.body.MatchString(a.body) {
			t.Errorf("%s: %d %s, want %d matching %s", tc.c.name, a.status, a.body, tc.status, tc.body)
		}
	}
	code, rest := m.stop(t, syscall.SIGINT)
	if code != 0 || rest != "" {
		t.Errorf("after SIGINT: exit %d, more stdout %q; want 0 and none (the key came from the environment)", code, rest)
	}
}

// TestHelpListsEveryFlag runs -h: exit 0, and every flag explained.
func TestHelpListsEveryFlag(t *testing.T) {
	code, stdout, stderr := runMock(t, "-h")
	if code != 0 || stdout != "" {
		t.Fatalf("-h: exit %d, stdout %q; want 0 and the usage on stderr", code, stdout)
	}
	for _, f := range []string{"addr", "secret-key", "restricted-key", "seed", "faults", "rate-limit", "burst",
		"rate-limit-headers", "balance", "webhook-url", "webhook-secret", "webhook-faults", "checkout-delay", "checkout-failures",
		"shutdown-timeout"} {
		if !regexp.MustCompile(`(?m)^  -` + f + `( |$)`).MatchString(stderr) {
			t.Errorf("-h does not explain -%s", f)
		}
	}
	for _, want := range []string{"/api/v1", "/_mock/ledger", "SIGTERM", "flaky", "SPOTFLOW_MOCK_SECRET_KEY"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("-h does not mention %s", want)
		}
	}
}

// TestBadUsage runs the binary with bad flags: each exits 2 with one line
// on stderr naming what was wrong, nothing on stdout, and no stack trace.
func TestBadUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-bogus"}, "-bogus"},
		{"missing argument", []string{"-addr"}, "-addr"},
		{"argument", []string{"serve"}, `"serve"`},
		{"unknown profile", []string{"-faults", "wild"}, `unknown fault profile "wild" (profiles: none, flaky, uncertain, slow, chaos`},
		{"bad rate", []string{"-faults", "reset_after=2"}, `"reset_after=2"`},
		{"unknown fault", []string{"-faults", "explode=0.1"}, `"explode"`},
		{"bad rate limit", []string{"-rate-limit", "fast"}, "-rate-limit"},
		{"bad burst", []string{"-rate-limit", "test", "-burst", "-1"}, "-burst"},
		{"bad address", []string{"-addr", "127.0.0.1:99999"}, "-addr"},
		{"bad webhook url", []string{"-webhook-url", "ftp://x"}, "-webhook-url"},
		{"bad webhook secret", []string{"-webhook-url", "http://127.0.0.1:1/", "-webhook-secret", "sk_not_a_secret"}, "-webhook-secret"},
		{"secret without url", []string{"-webhook-secret", "whsec_AAAA"}, "-webhook-url"},
		{"webhook faults without url", []string{"-webhook-faults", "duplicates=0.5"}, "-webhook-url"},
		{"unknown webhook fault", []string{"-webhook-url", "http://127.0.0.1:1/", "-webhook-faults", "lost=0.5"}, `"lost"`},
		{"webhook share out of range", []string{"-webhook-url", "http://127.0.0.1:1/", "-webhook-faults", "duplicates=2"}, "Duplicates"},
		{"bad checkout share", []string{"-checkout-failures", "1.5"}, "-checkout-failures"},
		{"bad shutdown timeout", []string{"-shutdown-timeout", "0s"}, "-shutdown-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runMock(t, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want none", stdout)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "spotflow-mock: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q, want one line starting spotflow-mock: and naming %s", stderr, tc.want)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") || strings.Contains(stderr, "sk_not_a_secret") {
				t.Errorf("stderr %q has a stack trace or a secret", stderr)
			}
		})
	}
}

// TestGeneratedKey starts the binary without a key: the second line is a
// fresh test key, the only one accepted.
func TestGeneratedKey(t *testing.T) {
	m := startMock(t, 2, nil)
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[0-9]+/api/v1$`).MatchString(m.base) {
		t.Errorf("line 1 = %q, want http://127.0.0.1:PORT/api/v1", m.base)
	}
	key := m.lines[1]
	if !regexp.MustCompile(`^sk_test_[0-9a-f]{32}$`).MatchString(key) {
		t.Fatalf("line 2 = %q, want sk_test_ and 32 hex digits", key)
	}
	if a := do(t, m.base, call{"generated key", "POST", "/payments", key, "", payment("g-1")}); a.status != 201 {
		t.Errorf("with the generated key: %d %s, want 201", a.status, a.body)
	}
	if a := do(t, m.base, call{"default key", "POST", "/payments", spotflowtest.DefaultSecretKey, "", payment("g-2")}); a.status != 401 {
		t.Errorf("with spotflowtest's default key: %d, want 401", a.status)
	}
	if code, rest := m.stop(t, syscall.SIGTERM); code != 0 || rest != "" {
		t.Errorf("exit %d, more stdout %q; want 0 and none", code, rest)
	}
}

// ledger reads GET /_mock/ledger.
func ledger(t *testing.T, root string) (spotflowtest.Ledger, string) {
	t.Helper()
	resp, err := client.Get(root + spotflowtest.ControlPrefix + "/ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /_mock/ledger: %d %s %v", resp.StatusCode, body, err)
	}
	var l struct {
		Payments []spotflowtest.Payment `json:"payments"`
		Stats    spotflowtest.Stats     `json:"stats"`
		Arrivals map[string]int         `json:"arrivals"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("ledger %s: %v", body, err)
	}
	return spotflowtest.Ledger{Payments: l.Payments, Stats: l.Stats, Arrivals: l.Arrivals}, string(body)
}

// TestSignalAnswersRequestInFlight sends SIGTERM (and SIGINT) while a
// request sleeps in an injected latency: the request is answered, the
// binary exits 0, and it accepts nothing afterwards.
func TestSignalAnswersRequestInFlight(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			m := startMock(t, 1, nil, "-secret-key", secretKey, "-faults", "latency=1500ms")
			type result struct {
				a   answer
				err error
			}
			answered := make(chan result, 1)
			go func() {
				a, err := tryDo(t, m.base, call{"in flight", "POST", "/payments", secretKey, "", payment("flight-1")})
				answered <- result{a, err}
			}()
			// The request has arrived (the ledger counts it) and sleeps.
			deadline := time.Now().Add(startTimeout)
			for {
				if l, _ := ledger(t, m.root); l.Stats.Requests == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the request never arrived")
				}
				time.Sleep(10 * time.Millisecond)
			}
			code, _ := m.stop(t, sig)
			if code != 0 {
				t.Errorf("exit %d after %v, want 0; stderr:\n%s", code, sig, m.stderr)
			}
			select {
			case r := <-answered:
				if r.err != nil || r.a.status != 201 {
					t.Errorf("request in flight: %d %s %v, want 201", r.a.status, r.a.body, r.err)
				}
			case <-time.After(stopTimeout):
				t.Fatal("request in flight: no answer and no error")
			}
			if _, err := client.Get(m.root + "/_mock/ledger"); err == nil {
				t.Error("a request after the stop was answered")
			}
		})
	}
}

// TestWebhooksSigned points the binary's webhooks at a receiver built with
// the project's webhook package: every payment's event arrives, verified
// with the secret given or printed, once however often it is delivered
// (-webhook-faults duplicates=1), and the ledger lists the deliveries.
func TestWebhooksSigned(t *testing.T) {
	for _, tc := range []struct {
		name      string
		secret    string // "" lets the binary derive one and print it
		faults    string // -webhook-faults
		delivered int    // tries answered 2xx
	}{
		{"given secret", "whsec_c2VjcmV0LWZvci10aGUtbW9jay10ZXN0", "", 2},
		{"printed secret", "", "", 2},
		{"every event twice", "whsec_c2VjcmV0LWZvci10aGUtbW9jay10ZXN0", "duplicates=1,backoff=10ms", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var events []webhook.Event
			handler := func(secret string) http.Handler {
				h, err := webhook.NewHandler(secret, func(_ context.Context, ev webhook.Event) error {
					mu.Lock()
					defer mu.Unlock()
					events = append(events, ev)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return h
			}
			var recv http.Handler
			var recvMu sync.Mutex
			receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				recvMu.Lock()
				h := recv
				recvMu.Unlock()
				h.ServeHTTP(w, r)
			}))
			defer receiver.Close()

			args := []string{"-secret-key", secretKey, "-webhook-url", receiver.URL}
			lines := 1
			if tc.faults != "" {
				args = append(args, "-webhook-faults", tc.faults)
			}
			if tc.secret != "" {
				args = append(args, "-webhook-secret", tc.secret)
			} else {
				lines = 2
			}
			m := startMock(t, lines, nil, args...)
			secret := tc.secret
			if secret == "" {
				secret = m.lines[1]
			}
			recvMu.Lock()
			recv = handler(secret)
			recvMu.Unlock()

			for _, ref := range []string{"hook-1", "hook-2"} {
				if a := do(t, m.base, call{ref, "POST", "/payments", secretKey, "", payment(ref)}); a.status != 201 {
					t.Fatalf("%s: %d %s", ref, a.status, a.body)
				}
			}
			resp, err := client.Post(m.root+"/_mock/webhooks/wait?timeout=15s", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("POST /_mock/webhooks/wait: %d, want 204", resp.StatusCode)
			}
			mu.Lock()
			got := map[string]string{}
			for _, ev := range events {
				got[ev.Reference] = ev.Type
			}
			mu.Unlock()
			if got["hook-1"] != "payment_successful" || got["hook-2"] != "payment_successful" || len(got) != 2 {
				t.Errorf("events received and verified: %v, want payment_successful for hook-1 and hook-2", got)
			}
			_, raw := ledger(t, m.root)
			var l struct{ Deliveries []map[string]any }
			_ = json.Unmarshal([]byte(raw), &l)
			delivered := 0
			for _, d := range l.Deliveries {
				if d["delivered"] == true {
					delivered++
				}
			}
			if delivered != tc.delivered {
				t.Errorf("ledger deliveries %v, want %d delivered", l.Deliveries, tc.delivered)
			}
			if code, _ := m.stop(t, syscall.SIGTERM); code != 0 {
				t.Errorf("exit %d, want 0", code)
			}
		})
	}
}

// TestSeedReproducible runs the same requests twice against -seed 42 with
// faults: the ledgers are the same, byte for byte, and so are the answers;
// another seed gives another ledger.
func TestSeedReproducible(t *testing.T) {
	run := func(seed string) (string, []int) {
		m := startMock(t, 1, nil, "-secret-key", secretKey, "-seed", seed,
			"-faults", "proxy_error=0.2,server_error_after=0.2,reset_after=0.1")
		var statuses []int
		for i := range 20 {
			c := call{"p", "POST", "/payments", secretKey, "", payment(fmt.Sprintf("seed-%d", i))}
			req, _ := http.NewRequest(c.method, m.base+c.path, strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+c.key)
			resp, err := client.Do(req)
			if err != nil {
				statuses = append(statuses, 0) // a reset
				continue
			}
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
		}
		_, raw := ledger(t, m.root)
		if code, _ := m.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
		return raw, statuses
	}
	a, sa := run("42")
	b, sb := run("42")
	if a != b {
		t.Errorf("two runs with -seed 42 gave two ledgers:\n%s\n%s", a, b)
	}
	if fmt.Sprint(sa) != fmt.Sprint(sb) {
		t.Errorf("two runs with -seed 42 answered %v and %v", sa, sb)
	}
	kinds := map[bool]int{}
	for _, s := range sa {
		kinds[s == 201]++
	}
	if kinds[true] == 0 || kinds[false] == 0 {
		t.Errorf("answers %v: want both successes and faults", sa)
	}
	if c, _ := run("43"); c == a {
		t.Error("-seed 43 gave the ledger of -seed 42")
	}
}
