package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// testConfig is a small run: 200 payments from 8 workers, with after-commit
// faults frequent enough that a blind retry surely charges twice. Faults are
// decided by a hash of the seed and the request, so the naive column's
// duplicates do not depend on timing; the rate limit and the outage only
// move a few of them.
func testConfig() config {
	cfg := defaultConfig()
	cfg.Payments = 200
	cfg.Workers = 8
	cfg.Seed = 7
	cfg.Timeout = 10 * time.Second
	cfg.Rate, cfg.Burst = 300, 30
	cfg.Faults = spotflowtest.Faults{
		ServerErrorBeforeCommit: 0.03,
		ServerErrorAfterCommit:  0.10,
		ProxyError:              0.05,
		ResetBeforeCommit:       0.02,
		ResetAfterCommit:        0.05,
		Latency:                 5 * time.Millisecond,
		LatencyJitter:           15 * time.Millisecond,
	}
	cfg.OutageAt, cfg.Outage = 300*time.Millisecond, 200*time.Millisecond
	return cfg
}

func TestDemo(t *testing.T) {
	cfg := testConfig()
	var log bytes.Buffer
	start := time.Now()
	results := run(cfg, &progress{w: &log})
	t.Logf("ran in %v", time.Since(start).Round(time.Millisecond))
	var table bytes.Buffer
	printSetup(&table, cfg)
	printTable(&table, results)
	t.Logf("progress:\n%s\n%s", log.String(), table.String())

	if len(results) != 3 {
		t.Fatalf("%d columns, want 3", len(results))
	}
	plain, naive, ours := results[0], results[1], results[2]
	for _, r := range results {
		if r.Asked != cfg.Payments {
			t.Errorf("%s: asked %d, want %d", r.Name, r.Asked, cfg.Payments)
		}
	}

	if ours.Duplicates != 0 || ours.Lost != 0 {
		t.Errorf("%s: %d duplicates, %d lost; want none", ours.Name, ours.Duplicates, ours.Lost)
	}
	if ours.Unresolved != 0 || ours.Confirmed != cfg.Payments {
		t.Errorf("%s: %d unresolved, %d confirmed; want 0 and %d", ours.Name, ours.Unresolved, ours.Confirmed, cfg.Payments)
	}
	settled := ours.ByWebhook + ours.ByVerify + ours.ByResend
	if ours.Unknown == 0 || settled != ours.Unknown || ours.NeedsHuman != 0 {
		t.Errorf("%s: %d unknown, %d settled by the reconciler (%d webhook, %d verify, %d re-send), %d need a human; "+
			"want each unknown settled once, and some to settle", ours.Name, ours.Unknown, settled,
			ours.ByWebhook, ours.ByVerify, ours.ByResend, ours.NeedsHuman)
	}
	// Server errors and resets are retried; the table says so.
	if !strings.Contains(ours.Reasons, "retried: connection ") || !strings.Contains(ours.Reasons, "server_error ") ||
		!strings.Contains(table.String(), ours.Name+" "+ours.Reasons) || plain.Reasons != "" {
		t.Errorf("%s: reasons %q; want connection and server_error retries, printed under the table", ours.Name, ours.Reasons)
	}
	checkSealed(t, ours, table.String())
	if naive.Duplicates == 0 {
		t.Errorf("%s: no duplicates; with %g%% of requests failing after commit a blind retry must charge twice",
			naive.Name, 100*(cfg.Faults.ServerErrorAfterCommit+cfg.Faults.ResetAfterCommit))
	}
	if plain.Lost == 0 || plain.Duplicates != 0 {
		t.Errorf("%s: %d lost, %d duplicates; want some lost (500s after commit) and no duplicates",
			plain.Name, plain.Lost, plain.Duplicates)
	}
	if plain.ServerRequests != cfg.Payments {
		t.Errorf("%s: %d requests reached the server, want one per payment", plain.Name, plain.ServerRequests)
	}
}

// checkSealed: column (c)'s journal is sealed, with no customer email
// readable in its file, and the table says so.
func checkSealed(t *testing.T, ours result, table string) {
	t.Helper()
	if !strings.Contains(ours.Journal, "journal sealed") || !strings.HasSuffix(ours.Journal, "file: 0") ||
		!strings.Contains(table, ours.Name+" "+ours.Journal) {
		t.Errorf("%s: journal %q; want it sealed, no email readable in the file, printed under the table", ours.Name, ours.Journal)
	}
}

// TestDemoCrash: (c) stopped abruptly half-way, its transport and memory
// dropped and its journal file opened again, still charges every payment
// once and loses none: the calls in flight at the crash are settled from
// the journal.
func TestDemoCrash(t *testing.T) {
	cfg := testConfig()
	cfg.Crash = true
	ours := run(cfg, nil)[2]
	var table bytes.Buffer
	printTable(&table, []result{ours})
	t.Logf("\n%s", table.String())
	if ours.Duplicates != 0 || ours.Lost != 0 || ours.Unresolved != 0 || ours.Confirmed != cfg.Payments {
		t.Errorf("%d duplicates, %d lost, %d unresolved, %d confirmed; want 0, 0, 0, %d",
			ours.Duplicates, ours.Lost, ours.Unresolved, ours.Confirmed, cfg.Payments)
	}
	if ours.Crashed == 0 {
		t.Error("no call was in flight at the crash")
	}
	if !strings.Contains(ours.Journal, "file: 0;") || !strings.Contains(ours.Journal, "the restart rotated") ||
		!strings.Contains(ours.Journal, "now 0 ") || strings.Contains(ours.Journal, "then sealed 0 ") {
		t.Errorf("journal %q; want no email readable, and the old key sealing some entries at the restart and none at the end", ours.Journal)
	}
}

// TestEmailsIn: the demo's count of emails in the journal file finds them
// in base64 bodies at every alignment, and in clear.
func TestEmailsIn(t *testing.T) {
	for off := range 6 {
		body := []byte(strings.Repeat("x", off) + `{"email":"customer1@example.com"}`)
		file := []byte(`{"body":"` + base64.StdEncoding.EncodeToString(body) + `"} customer2@example.com`)
		if n := emailsIn(file); n != 2 {
			t.Errorf("offset %d: %d emails found, want 2", off, n)
		}
	}
}

func TestFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: err = %v", err)
	}
	for _, want := range []string{"(c) spotflowhttp", "-n payments", "-seed", "-rate", "-outage", "-timeout", "-server-error-after"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}

	cfg, err := parseFlags([]string{"-n", "10", "-workers", "2", "-seed", "3", "-rate", "0", "-reset-after", "0.5", "-outage", "0"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Payments != 10 || cfg.Workers != 2 || cfg.Seed != 3 || cfg.Rate != 0 || cfg.Faults.ResetAfterCommit != 0.5 || len(cfg.serverFaults().Outages) != 0 {
		t.Errorf("parsed %+v", cfg)
	}
	for _, bad := range [][]string{{"-n", "0"}, {"-workers", "0"}, {"-timeout", "0s"}, {"extra"}} {
		if _, err := parseFlags(bad, &out); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
