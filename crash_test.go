package spotflowhttp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
	"github.com/spotflow-go/spotflowhttp/webhook"
)

// The child process of TestCrashRecovery reads its role and its
// surroundings from these variables.
const (
	crashChildEnv    = "SPOTFLOWHTTP_CRASH_CHILD"
	crashURLEnv      = "SPOTFLOWHTTP_CRASH_URL"
	crashKeyEnv      = "SPOTFLOWHTTP_CRASH_KEY"
	crashJournalEnv  = "SPOTFLOWHTTP_CRASH_JOURNAL"
	crashOutcomesEnv = "SPOTFLOWHTTP_CRASH_OUTCOMES"
	crashHookEnv     = "SPOTFLOWHTTP_CRASH_WEBHOOK_SECRET"
	crashAddrEnv     = "SPOTFLOWHTTP_CRASH_WEBHOOK_ADDR" // where the child writes its webhook address
)

const (
	crashOrders  = 1000
	crashWorkers = 4
	crashKills   = 6 // kills at random points of progress, plus one early in a restart
)

// crashOrder is order i's reference: a restart knows from it what is left.
func crashOrder(i int) string { return fmt.Sprintf("crash-%04d", i) }

// crashInvalid marks the orders sent without a customer, which Spotflow
// refuses for good (400 missing_parameter): they must end "not created".
func crashInvalid(i int) bool { return i%37 == 5 }

func crashBody(i int) string {
	if crashInvalid(i) {
		return fmt.Sprintf(`{"amount":%d,"currency":"NGN","reference":%q}`, 1000+i, crashOrder(i))
	}
	return fmt.Sprintf(`{"amount":%d,"currency":"NGN","customer":{"email":"c%d@example.com"},"reference":%q}`,
		1000+i, i, crashOrder(i))
}

// TestCrashRecovery holds the journal to its promise across real crashes.
// The test binary runs itself again as a child process that pays 1,000
// orders through NewTransport with a file journal (boltjournal) against a
// simulator the parent runs, with a realistic mix of 5xx, proxy errors and
// connection resets before and after commit, and signed webhooks (some
// duplicated, some late, a few forged) that the child receives with the
// webhook package and gives to its reconciler. The parent kills the child
// with SIGKILL at random points (six while it sends, one just after a
// restart) and starts it again; each new child first reconciles what the
// journal holds, then sends the orders that have no outcome yet.
//
// At the end every order has exactly one outcome, created or not created,
// none unknown and none left to a human; the ledger agrees with each, and
// no order is charged twice.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild(t)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process 8 times or more")
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("kill moments seeded with %d", seed)

	srv := spotflowtest.NewServer(
		spotflowtest.WithSeed(int64(seed)),
		spotflowtest.WithFaults(spotflowtest.Faults{
			ServerErrorBeforeCommit: 0.02,
			ServerErrorAfterCommit:  0.03,
			ProxyError:              0.02,
			ResetBeforeCommit:       0.02,
			ResetAfterCommit:        0.03,
			Latency:                 2 * time.Millisecond,
			LatencyJitter:           4 * time.Millisecond,
		}),
		// No URL until a child is listening: events wait for one.
		spotflowtest.WithWebhooks(spotflowtest.Webhooks{
			Duplicates: 0.05, OutOfOrder: 0.1, BadSignature: 0.02,
			Backoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, MaxAttempts: 50,
		}))
	defer srv.Close()
	dir := t.TempDir()
	outcomes := filepath.Join(dir, "outcomes")
	env := append(os.Environ(),
		crashChildEnv+"=1",
		crashURLEnv+"="+srv.BaseURL(),
		crashKeyEnv+"="+srv.SecretKey(),
		crashJournalEnv+"="+filepath.Join(dir, "journal.db"),
		crashOutcomesEnv+"="+outcomes,
		crashHookEnv+"="+srv.WebhookSecret(),
	)

	// Kill points: after a random number of outcomes, spread over the run
	// so that every kill lands while payments are in flight.
	var targets []int
	for k := range crashKills {
		lo := 50 + k*(crashOrders-100)/crashKills
		targets = append(targets, lo+rng.IntN((crashOrders-100)/crashKills))
	}
	deadline := time.Now().Add(time.Minute)
	var log bytes.Buffer
	kills, early := 0, false
	for run := 1; ; run++ {
		if time.Now().After(deadline) {
			t.Fatalf("not done after %d runs and %d kills", run-1, kills)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1", "-test.v")
		addr := filepath.Join(dir, fmt.Sprintf("webhook-addr-%d", run))
		cmd.Env = append(env, crashAddrEnv+"="+addr)
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		listening := crashListening(srv, addr)

		var kill <-chan time.Time
		switch {
		case kills < len(targets):
			kill = crashWhen(outcomes, targets[kills], rng)
		case !early: // once more, early in a restart: during its reconciliation
			early = true
			kill = time.After(time.Duration(5+rng.IntN(40)) * time.Millisecond)
		}
		select {
		case <-time.After(time.Until(deadline)):
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			t.Fatalf("child run %d still running at the deadline, after %d kills\n%s", run, kills, lastLines(log.String(), 30))
		case err := <-exited:
			if err != nil {
				t.Fatalf("child run %d failed: %v\n%s", run, err, lastLines(log.String(), 30))
			}
			if kills < len(targets) {
				t.Fatalf("the child finished after %d kills; the kill points were %v", kills, targets)
			}
			t.Logf("%d runs, %d SIGKILLs (%d while sending)", run, kills, len(targets))
			crashCheck(t, srv, outcomes)
			return
		case <-kill:
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			kills++
		}
		<-listening
		srv.SetWebhookURL("") // hold the events until the next child listens
	}
}

// crashListening points the server's webhooks at the child once it has
// written its address to addr. The returned channel is closed when it has,
// or has given up (the child died first).
func crashListening(srv *spotflowtest.Server, addr string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			if b, err := os.ReadFile(addr); err == nil && len(b) > 0 {
				srv.SetWebhookURL("http://" + string(b))
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return done
}

// crashWhen fires once the outcomes file has target lines, plus a random
// 0-20 ms so the kill falls anywhere in the calls then in flight.
func crashWhen(outcomes string, target int, rng *rand.Rand) <-chan time.Time {
	ch := make(chan time.Time, 1)
	extra := time.Duration(rng.IntN(20)) * time.Millisecond
	go func() {
		for {
			b, _ := os.ReadFile(outcomes)
			if bytes.Count(b, []byte("\n")) >= target {
				time.Sleep(extra)
				ch <- time.Now()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return ch
}

// crashCheck holds the outcomes the children wrote against the ledger.
func crashCheck(t *testing.T, srv *spotflowtest.Server, outcomes string) {
	byOrder, by := readOutcomes(t, outcomes)
	t.Logf("outcomes learnt by: %v", by)
	if by["restart"] == 0 {
		t.Error("no restart found a pending entry to reconcile: the kills never caught a payment in flight?")
	}
	bad := 0
	for i := range crashOrders {
		ref := crashOrder(i)
		got := byOrder[ref]
		charges := srv.Charges(ref)
		want := "created"
		if crashInvalid(i) {
			want = "not_created"
		}
		switch {
		case charges > 1:
			t.Errorf("%s charged %d times", ref, charges)
		case len(got) == 0:
			t.Errorf("%s: unknown (no outcome reported)", ref)
		case len(got) > 1:
			t.Errorf("%s: outcomes disagree: %v", ref, got)
		case got[0] != want:
			t.Errorf("%s: %s, want %s", ref, got[0], want)
		case (charges == 1) != (want == "created"):
			t.Errorf("%s: reported %s, but the ledger has %d", ref, got[0], charges)
		default:
			continue
		}
		if bad++; bad == 20 {
			t.Fatal("too many errors")
		}
	}
}

// readOutcomes parses the lines "reference outcome source": the distinct
// outcomes reported per order, and how many were learnt by each source.
func readOutcomes(t *testing.T, path string) (map[string][]string, map[string]int) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byOrder := map[string][]string{}
	by := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue // a line cut short by a kill
		}
		ref, outcome := fields[0], fields[1]
		for _, src := range fields[2:] {
			by[src]++
		}
		seen := false
		for _, o := range byOrder[ref] {
			seen = seen || o == outcome
		}
		if !seen {
			byOrder[ref] = append(byOrder[ref], outcome)
		}
	}
	return byOrder, by
}

// crashChild is one life of the paying process: reconcile what the journal
// holds, then pay what has no outcome, then reconcile what ended uncertain.
func crashChild(t *testing.T) {
	url, key := os.Getenv(crashURLEnv), os.Getenv(crashKeyEnv)
	j, err := boltjournal.Open(os.Getenv(crashJournalEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	out, done := openOutcomes(t, os.Getenv(crashOutcomesEnv))
	defer out.Close()

	base := http.DefaultTransport.(*http.Transport).Clone()
	defer base.CloseIdleConnections()
	opts := []spotflowhttp.Option{
		spotflowhttp.WithJournal(j),
		spotflowhttp.WithMaxAttempts(3),
		spotflowhttp.WithServerErrorDelay(5 * time.Millisecond),
		spotflowhttp.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(2 * time.Millisecond) }),
	}
	phase := "restart"
	var mu sync.Mutex
	report := func(ref, outcome, source string) {
		mu.Lock()
		defer mu.Unlock()
		done[ref] = true
		// One write per line: a kill never leaves half of one.
		if _, err := out.WriteString(ref + " " + outcome + " " + source + "\n"); err != nil {
			t.Error(err)
		}
	}
	rec, err := spotflowhttp.NewReconciler(j, base,
		func(req *http.Request, _ spotflowhttp.Entry) error {
			req.Header.Set("Authorization", "Bearer "+key)
			return nil
		},
		func(s spotflowhttp.Settlement) {
			mu.Lock()
			p := phase
			mu.Unlock()
			report(s.Entry.Reference, s.Outcome.String(), p+" "+s.By.String())
		},
		// A short wait for a webhook before asking the verify endpoint.
		append(opts, spotflowhttp.WithVerifyAfter(100*time.Millisecond), spotflowhttp.WithReconcileInterval(10*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hooks, err := webhook.NewHandler(os.Getenv(crashHookEnv), func(_ context.Context, ev webhook.Event) error {
		rec.Observe(ev.Type, ev.Reference, ev.Status, ev.Timestamp, ev.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hookSrv := &http.Server{Handler: hooks}
	go hookSrv.Serve(ln)
	defer hookSrv.Close()
	tmp := os.Getenv(crashAddrEnv) + ".tmp"
	if err := os.WriteFile(tmp, []byte(ln.Addr().String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, os.Getenv(crashAddrEnv)); err != nil { // whole, or not at all
		t.Fatal(err)
	}
	drain := func() {
		for {
			left, err := rec.ReconcileOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if left == 0 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	drain() // what the killed process left in flight

	mu.Lock()
	phase = "run"
	var todo []int
	for i := range crashOrders {
		if !done[crashOrder(i)] {
			todo = append(todo, i)
		}
	}
	mu.Unlock()
	runCtx, stop := context.WithCancel(ctx)
	running := make(chan struct{})
	go func() { rec.Run(runCtx); close(running) }()

	client := &http.Client{Transport: spotflowhttp.NewTransport(base, opts...)}
	next := make(chan int)
	var wg sync.WaitGroup
	for range crashWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if outcome := crashPay(ctx, client, url, key, i); outcome != "" {
					report(crashOrder(i), outcome, "call")
				}
			}
		}()
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	stop()
	<-running
	drain() // what ended uncertain
}

// crashPay pays order i and returns its outcome, or "" if it is uncertain:
// the journal keeps it for the reconciler.
func crashPay(ctx context.Context, client *http.Client, url, key string, i int) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/payments", strings.NewReader(crashBody(i)))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	var e *spotflowhttp.Error
	if err == nil {
		resp.Body.Close()
		e = spotflowhttp.ErrorOf(resp)
	} else if !errors.As(err, &e) {
		panic(err)
	}
	switch {
	case e == nil, e.Category == spotflowhttp.CategoryTreatAsSuccess && !e.Uncertain:
		return "created" // at once, or by an earlier life of this process
	case e.Uncertain:
		return ""
	}
	return "not_created"
}

// openOutcomes opens the outcomes file for appending and returns the orders
// it already settles.
func openOutcomes(t *testing.T, path string) (*os.File, map[string]bool) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	done := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) >= 3 {
			done[fields[0]] = true
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		f.WriteString("\n") // end a line a kill cut short
	}
	return f, done
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
