package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
	"go.uber.org/goleak"
)

// binary is the command, built once by TestMain; the tests run it as a
// user would. mockBinary is spotflow-mock, built from the root module of
// the workspace, "" if it could not be.
var binary, mockBinary string

// holdEnv makes the test binary a stand-in for a running service: it opens
// the journal file named by the variable, serves a journaladmin handler on
// 127.0.0.1, prints the handler's URL, and exits when its stdin closes.
const holdEnv = "SPOTFLOW_JOURNAL_TEST_HOLD"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		os.Exit(holdJournal(path))
	}
	dir, err := os.MkdirTemp("", "spotflow-journal-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "spotflow-journal")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	mockBinary = filepath.Join(dir, "spotflow-mock")
	if out, err := exec.Command("go", "build", "-o", mockBinary, "github.com/spotflow-go/spotflowhttp/cmd/spotflow-mock").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "spotflow-mock not built, its test is skipped: %v\n%s", err, out)
		mockBinary = ""
	}
	code := m.Run()
	os.RemoveAll(dir)
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// holdJournal is the child process of startService.
func holdJournal(path string) int {
	j, err := boltjournal.Open(path)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer j.Close()
	audit := path + ".service-audit.jsonl"
	h, err := journaladmin.NewHandler(j, journaladmin.AllowResolve(func(_ context.Context, r journaladmin.AuditRecord) error {
		return journaladmin.AppendAudit(audit, r)
	}))
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.Handle("/spotflow/journal/", http.StripPrefix("/spotflow/journal", h))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	go http.Serve(l, mux)
	fmt.Printf("http://%s/spotflow/journal\n", l.Addr())
	io.Copy(io.Discard, os.Stdin) // until the test closes it
	return 0
}

// startService starts a process that holds the journal file at path open,
// as a running service does, and returns its journaladmin URL. It ends
// with the test.
func startService(t *testing.T, path string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		t.Fatalf("service: %q %v", line, err)
	}
	return strings.TrimSpace(line)
}

// result is what a run of the binary printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// sj runs the binary with args and the extra environment variables env
// (KEY=VALUE), at most 30 s.
func sj(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", args, err)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		t.Errorf("%v: a stack trace on stderr:\n%s", args, r.stderr)
	}
	return r
}

// cleanEnv is the environment without the command's variables, so that
// the tests do not depend on the caller's.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPOTFLOW_") {
			env = append(env, kv)
		}
	}
	return env
}

// want fails the test unless r exited with code and its stderr holds
// every one of parts.
func (r result) want(t *testing.T, code int, parts ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, p := range parts {
		if !strings.Contains(r.stderr, p) {
			t.Errorf("stderr lacks %q:\n%s", p, r.stderr)
		}
	}
}

// secret is a distinctive string in the bodies of the test entries.
const secret = "ada-7b1f9c@example.com"

// testEntries are the pending entries the tests fill journals with, at
// now: an old free one, one held by a live call, one of a merchant's
// account without a body.
func testEntries(now time.Time) []spotflowhttp.Entry {
	url := "https://api.spotflow.co/api/v1/payments"
	return []spotflowhttp.Entry{
		{Key: "key-old", Reference: "order-1", Method: "POST", URL: url, Time: now.Add(-3 * time.Hour),
			Header: map[string][]string{"Content-Type": {"application/json"}},
			Body:   []byte(`{"reference":"order-1","amount":5000,"currency":"NGN","customer":{"email":"` + secret + `"}}`)},
		{Key: "key-live", Reference: "order-2", Method: "POST", URL: url, Time: now.Add(-time.Minute),
			Body:  []byte(`{"reference":"order-2","amount":700,"currency":"NGN","customer":{"email":"` + secret + `"}}`),
			Owner: "call-4b1d", Until: now.Add(time.Hour)},
		{Key: "key-shop", Reference: "order-3", Account: "shop-7", Method: "POST",
			URL: "https://api.spotflow.co/api/v1/transfers", Time: now.Add(-2 * time.Minute), BodyMissing: true},
	}
}

// fillBolt writes entries to a new bolt journal file in a temporary
// directory, through SealJournal if key is not nil, and returns its path.
func fillBolt(t *testing.T, key []byte, entries []spotflowhttp.Entry) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	bj, err := boltjournal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var j spotflowhttp.Journal = bj
	if key != nil {
		if j, err = spotflowhttp.SealJournal(bj, key); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		if err := j.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := bj.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pendingIn reads the bolt journal at path.
func pendingIn(t *testing.T, path string) []spotflowhttp.Entry {
	t.Helper()
	j, err := boltjournal.OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	es, err := j.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return es
}
