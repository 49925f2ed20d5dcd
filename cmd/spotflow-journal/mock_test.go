package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// startMock starts the spotflow-mock binary and returns its base URL and
// secret key, as a script would read them; it is stopped with SIGTERM when
// the test ends.
func startMock(t *testing.T) (base, key string) {
	t.Helper()
	if mockBinary == "" {
		t.Skip("spotflow-mock could not be built")
	}
	cmd := exec.Command(mockBinary, "-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("spotflow-mock: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	rd := bufio.NewReader(stdout)
	base, err = rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	key, err = rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { rd.WriteTo(discard{}) }() // the mock never blocks on its stdout
	return strings.TrimSpace(base), strings.TrimSpace(key)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestReconcileAgainstSpotflowMock(t *testing.T) {
	base, key := startMock(t)
	req, _ := http.NewRequest("POST", base+"/payments", strings.NewReader(string(payment("r-a"))))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "key-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := map[string][]string{"Content-Type": {"application/json"}}
	now := time.Now()
	path := fillBolt(t, nil, []spotflowhttp.Entry{
		{Key: "key-a", Reference: "r-a", Method: "POST", URL: liveURL, Header: h, Body: payment("r-a"), Time: now.Add(-time.Hour)},
		{Key: "key-b", Reference: "r-b", Method: "POST", URL: liveURL, Header: h, Body: payment("r-b"), Time: now.Add(-time.Minute)},
	})
	r := sj(t, []string{"SPOTFLOW_SECRET_KEY=" + key}, "reconcile", "-file", path, "-base-url", base)
	r.want(t, 0)
	for _, line := range []string{"key-a  r-a  created by verify  status successful", "key-b  r-b  created by resend  status successful",
		"settled 2: created 2, not_created 0; needs_human 0, left pending for resolve; pending 0 in all"} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("stdout lacks %q:\n%s", line, r.stdout)
		}
	}
	resp, err = http.Get(strings.TrimSuffix(base, "/api/v1") + "/_mock/ledger")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ledger struct {
		Payments []struct{ Reference string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&ledger); err != nil {
		t.Fatal(err)
	}
	refs := map[string]int{}
	for _, p := range ledger.Payments {
		refs[p.Reference]++
	}
	if refs["r-a"] != 1 || refs["r-b"] != 1 || len(ledger.Payments) != 2 {
		t.Errorf("the mock's ledger: %v, want r-a and r-b once each", refs)
	}
}
