package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progress reports the phases of a run on stderr: a line updated in place
// when stderr is a terminal, else one line per finished phase. A nil
// *progress reports nothing.
type progress struct {
	w    io.Writer
	live bool
}

func newProgress(f *os.File) *progress {
	fi, err := f.Stat()
	return &progress{w: f, live: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

// start reports phase until the returned stop is called; done counts the
// calls finished out of total.
func (p *progress) start(phase string, total int, done *atomic.Int64) (stop func()) {
	if p == nil {
		return func() {}
	}
	begin := time.Now()
	line := func() string {
		return fmt.Sprintf("%s: %d/%d payments, %.1fs", phase, done.Load(), total, time.Since(begin).Seconds())
	}
	if !p.live {
		return func() { fmt.Fprintln(p.w, line()) }
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fmt.Fprintf(p.w, "\r\033[K%s", line())
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		fmt.Fprintf(p.w, "\r\033[K%s\n", line())
	}
}

// phase reports name once fn has returned, with how long it took.
func (p *progress) phase(name string, fn func()) {
	begin := time.Now()
	fn()
	if p != nil {
		fmt.Fprintf(p.w, "%s: %.1fs\n", name, time.Since(begin).Seconds())
	}
}

// printSetup describes the run and the columns.
func printSetup(w io.Writer, cfg config) {
	f := cfg.Faults
	fmt.Fprintf(w, "%d payments per column, %d workers, seed %d, deadline %v per call\n",
		cfg.Payments, cfg.Workers, cfg.Seed, cfg.Timeout)
	limit := "no rate limit"
	if cfg.Rate > 0 {
		limit = fmt.Sprintf("rate limit %g/s (burst %d)", cfg.Rate, cfg.Burst)
	}
	outage := "no outage"
	if cfg.Outage > 0 {
		outage = fmt.Sprintf("outage of %v at +%v", cfg.Outage, cfg.OutageAt)
	}
	fmt.Fprintf(w, "simulator: %s; latency %v + up to %v; %s\n", limit, f.Latency, f.LatencyJitter, outage)
	fmt.Fprintf(w, "faults per request: 500 before commit %s, 500 after commit %s, 502/503/504 %s, reset before commit %s, reset after commit %s\n",
		pct(f.ServerErrorBeforeCommit), pct(f.ServerErrorAfterCommit), pct(f.ProxyError), pct(f.ResetBeforeCommit), pct(f.ResetAfterCommit))
	fmt.Fprintln(w)
	for _, c := range columns {
		fmt.Fprintf(w, "%-17s %s\n", c.Name, c.About(cfg))
	}
	fmt.Fprintln(w)
}

func pct(p float64) string { return fmt.Sprintf("%g%%", 100*p) }

// printTable prints the results side by side, one row per figure.
func printTable(w io.Writer, rs []result) {
	rows := []struct {
		label string
		cell  func(r result) string
	}{
		{"payments asked", func(r result) string { return itoa(r.Asked) }},
		{"confirmed", func(r result) string { return itoa(r.Confirmed) }},
		{"failed (told: not charged)", func(r result) string { return itoa(r.Failed) }},
		{"outcome unknown", func(r result) string { return itoa(r.Unknown) }},
		{"  in flight at the crash (-crash)", func(r result) string {
			if r.Unresolved < 0 {
				return "-"
			}
			return itoa(r.Crashed)
		}},
		{"  settled by webhook", settledBy(func(r result) int { return r.ByWebhook })},
		{"  settled by verify", settledBy(func(r result) int { return r.ByVerify })},
		{"  settled by re-send", settledBy(func(r result) int { return r.ByResend })},
		{"  needs a human", settledBy(func(r result) int { return r.NeedsHuman })},
		{"  unknown at the end", func(r result) string {
			if r.Unresolved < 0 {
				return fmt.Sprintf("%d (no key)", r.Unknown)
			}
			return itoa(r.Unresolved)
		}},
		{"DUPLICATES CHARGED", func(r result) string { return itoa(r.Duplicates) }},
		{"LOST", func(r result) string { return itoa(r.Lost) }},
		{"429s received (client)", func(r result) string { return itoa(int(r.Client429s)) }},
		{"429s sent (server)", func(r result) string { return itoa(r.ServerRateLimits) }},
		{"attempts per payment", func(r result) string {
			return fmt.Sprintf("%.2f", float64(r.ServerRequests)/float64(max(r.Asked, 1)))
		}},
		{"escalations", func(r result) string { return itoa(r.Escalations) }},
		{"latency p50", func(r result) string { return ms(r.P50) }},
		{"latency p99", func(r result) string { return ms(r.P99) }},
		{"wall time", func(r result) string { return ms(r.Wall) }},
	}
	const labelWidth, cellWidth = 32, 19
	var b strings.Builder
	b.WriteString(strings.Repeat(" ", labelWidth))
	for _, r := range rs {
		fmt.Fprintf(&b, "%*s", cellWidth, r.Name)
	}
	b.WriteByte('\n')
	for _, row := range rows {
		fmt.Fprintf(&b, "%-*s", labelWidth, row.label)
		for _, r := range rs {
			fmt.Fprintf(&b, "%*s", cellWidth, row.cell(r))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "lost: charged but reported failed, or unknown with no key to find out; or confirmed but never charged.")
	fmt.Fprintln(&b, "attempts per payment: requests that reached the server / payments asked (resolution included).")
	for _, r := range rs {
		if r.Reasons != "" {
			fmt.Fprintf(&b, "%s %s\n", r.Name, r.Reasons)
		}
		if r.Journal != "" {
			fmt.Fprintf(&b, "%s %s\n", r.Name, r.Journal)
		}
	}
	io.WriteString(w, b.String())
}

// settledBy is a cell of a reconciler's count: "-" for a column without one.
func settledBy(n func(result) int) func(result) string {
	return func(r result) string {
		if r.Unresolved < 0 {
			return "-"
		}
		return itoa(n(r))
	}
}

func itoa(n int) string { return fmt.Sprint(n) }

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
