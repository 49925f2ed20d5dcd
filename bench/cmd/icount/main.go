// Command icount counts the CPU instructions one call costs through each
// client of the comparison, over an in-memory base, with valgrind's
// cachegrind: unlike nanoseconds, the count does not move with what else
// the machine runs, so two runs agree within a few per cent.
//
//	go run ./cmd/icount                                  # every client, GET and POST, about a minute
//	go run ./cmd/icount -clients bare,spotflowhttp -n 5000
//	go run ./cmd/icount -json                            # one JSON object per line
//
// For each client and method it runs itself under valgrind twice, making
// -base calls and then -base plus -n calls, with GOGC=off and GOMAXPROCS=1,
// and divides the difference of the two counts by -n: what is left is one
// call, without the program's start. Each count is the least of -repeat
// runs: the runtime's own background work, which depends on how long a run
// takes, only ever adds to a count. Every call makes a new request, as a
// caller does: a GET with an Authorization header, or a 1 KiB JSON payment
// POST with a reference. The base consumes the request body and answers a
// 200 with a small JSON body. GC is off, so the collector's share of an
// allocation is not counted: read allocations per call beside it
// (TestHotPathAllocations). It needs valgrind in PATH.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/bench"
)

// Client names, in table order.
var clientNames = []string{"bare", "spotflowhttp", "spotflowhttp+reference", "retryablehttp", "failsafe-go"}

func newClient(name string) (*http.Client, bool) {
	switch name {
	case "bare":
		return bench.Bare(memBase{}), true
	case "spotflowhttp":
		return bench.Ours(memBase{}), true
	case "spotflowhttp+reference":
		return bench.Ours(memBase{}, spotflowhttp.WithReference("reference")), true
	case "retryablehttp":
		return bench.Retryable(memBase{}, -1), true
	case "failsafe-go":
		return bench.Failsafe(memBase{}, 0), true
	}
	return nil, false
}

// memBase is the in-memory base: what a real transport does with the
// request body, and a fresh response each time.
type memBase struct{}

const okBody = `{"id":"pay_1","reference":"ref","amount":5000,"currency":"NGN","status":"successful"}`

func (memBase) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: int64(len(okBody)),
		Body: io.NopCloser(strings.NewReader(okBody)), Request: req}, nil
}

// payment is a 1 KiB payment body with a top-level reference, as Spotflow's
// create-payment takes it.
var payment = func() []byte {
	head := `{"amount":5000,"currency":"NGN","reference":"ord-000001","customer":{"email":"ada@example.com"},"note":"`
	return []byte(head + strings.Repeat("x", 1024-len(head)-2) + `"}`)
}()

// calls makes n calls through c.
func calls(c *http.Client, method string, n int) error {
	for i := 0; i < n; i++ {
		var req *http.Request
		var err error
		if method == http.MethodGet {
			req, err = http.NewRequest(method, "https://api.spotflow.co/api/v1/payments/verify?reference=ord-000001", nil)
		} else {
			req, err = http.NewRequest(method, "https://api.spotflow.co/api/v1/payments", bytes.NewReader(payment))
			req.Header.Set("Content-Type", "application/json")
		}
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer sk_test_x")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return nil
}

// Row is one line of the result.
type Row struct {
	Method       string `json:"method"`
	Client       string `json:"client"`
	Instructions int64  `json:"instructions"` // per call
	OverBare     int64  `json:"over_bare"`    // per call, over bare's
}

func main() {
	fs := flag.NewFlagSet("icount", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	clients := fs.String("clients", strings.Join(clientNames, ","), "comma-separated clients to count: "+strings.Join(clientNames, ", "))
	methods := fs.String("methods", "GET,POST", "comma-separated methods: GET, POST")
	n := fs.Int("n", 5000, "calls counted: the difference between the two runs")
	base := fs.Int("base", 1000, "calls of the first run, which warm the client up")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	repeat := fs.Int("repeat", 3, "runs of each count, of which the least is kept: what else the runtime does under valgrind only adds")
	child := fs.String("child", "", "internal: make the calls of one run, as CLIENT:METHOD:CALLS")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *child != "" {
		if err := runChild(*child); err != nil {
			fmt.Fprintln(os.Stderr, "icount:", err)
			os.Exit(2)
		}
		return
	}
	if *n < 1 || *base < 0 || *repeat < 1 || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "icount: -n and -repeat must be at least 1, -base at least 0, and no arguments given")
		os.Exit(2)
	}
	names, err := checkList(*clients, func(s string) bool { _, ok := newClient(s); return ok })
	if err == nil {
		_, err = checkList(*methods, func(s string) bool { return s == http.MethodGet || s == http.MethodPost })
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "icount:", err)
		os.Exit(2)
	}
	if _, err := exec.LookPath("valgrind"); err != nil {
		fmt.Fprintln(os.Stderr, "icount: valgrind is not in PATH (apt-get install valgrind)")
		os.Exit(1)
	}
	if err := count(os.Stdout, names, strings.Split(*methods, ","), *base, *n, *repeat, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "icount:", err)
		os.Exit(1)
	}
}

// checkList splits a comma-separated list and checks every item.
func checkList(list string, ok func(string) bool) ([]string, error) {
	items := strings.Split(list, ",")
	for _, s := range items {
		if !ok(s) {
			return nil, fmt.Errorf("unknown %q in %q", s, list)
		}
	}
	return items, nil
}

func runChild(spec string) error {
	parts := strings.Split(spec, ":")
	if len(parts) != 3 {
		return errors.New("-child wants CLIENT:METHOD:CALLS")
	}
	c, ok := newClient(parts[0])
	n, err := strconv.Atoi(parts[2])
	if !ok || err != nil {
		return fmt.Errorf("bad -child %q", spec)
	}
	return calls(c, parts[1], n)
}

// count prints a row per method and client; bare is counted first for each
// method whether asked for or not, as the rows are over it. The runs go on
// as many at a time as there are CPUs: a count does not depend on load.
func count(w io.Writer, clients, methods []string, base, n, repeat int, asJSON bool) error {
	type job struct{ client, method string }
	var jobs []job
	for _, m := range methods {
		jobs = append(jobs, job{"bare", m})
		for _, c := range clients {
			if c != "bare" {
				jobs = append(jobs, job{c, m})
			}
		}
	}
	results := make([]int64, len(jobs))
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, runtime.NumCPU())
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = perCall(j.client, j.method, base, n, repeat)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	perJob := map[job]int64{}
	for i, j := range jobs {
		perJob[j] = results[i]
	}
	if !asJSON {
		fmt.Fprintf(w, "%-6s %-24s %14s %10s\n", "method", "client", "instr/call", "over bare")
	}
	for _, m := range methods {
		bare := perJob[job{"bare", m}]
		for _, c := range clients {
			row := Row{Method: m, Client: c, Instructions: perJob[job{c, m}]}
			row.OverBare = row.Instructions - bare
			if asJSON {
				b, _ := json.Marshal(row)
				fmt.Fprintf(w, "%s\n", b)
			} else {
				fmt.Fprintf(w, "%-6s %-24s %14d %+10d\n", row.Method, row.Client, row.Instructions, row.OverBare)
			}
		}
	}
	return nil
}

// perCall is the instructions of one call of client with method: the
// difference of two counts over the difference of their calls, each count
// the least of repeat runs.
func perCall(client, method string, base, n, repeat int) (int64, error) {
	least := func(calls int) (int64, error) {
		var min int64
		for i := 0; i < repeat; i++ {
			c, err := instructions(client, method, calls)
			if err != nil {
				return 0, err
			}
			if i == 0 || c < min {
				min = c
			}
		}
		return min, nil
	}
	a, err := least(base)
	if err != nil {
		return 0, err
	}
	b, err := least(base + n)
	if err != nil {
		return 0, err
	}
	return (b - a) / int64(n), nil
}

var irefs = regexp.MustCompile(`I\s+refs:\s+([0-9,]+)`)

// instructions runs this program under cachegrind making calls calls, and
// returns the instructions it executed.
func instructions(client, method string, calls int) (int64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
		self, "-child", fmt.Sprintf("%s:%s:%d", client, method, calls))
	cmd.Env = append(os.Environ(), "GOGC=off", "GOMAXPROCS=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s %s under valgrind: %v: %s", client, method, err, lastLine(stderr.String()))
	}
	m := irefs.FindStringSubmatch(stderr.String())
	if m == nil {
		return 0, fmt.Errorf("%s %s: no instruction count in valgrind's output", client, method)
	}
	return strconv.ParseInt(strings.ReplaceAll(m[1], ",", ""), 10, 64)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
