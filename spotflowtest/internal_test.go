package spotflowtest

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	b := newBucket(2, 3, t0) // 2 tokens a second, bursts of 3
	tests := []struct {
		at         time.Duration
		ok         bool
		retryAfter int64
		remaining  int
		reset      int64 // seconds after t0
	}{
		{0, true, 0, 2, 1},                       // 1 missing: full in 0.5s, rounded up
		{0, true, 0, 1, 1},                       // 2 missing: 1s
		{0, true, 0, 0, 2},                       // 3 missing: 1.5s
		{0, false, 1, 0, 2},                      // one token in 0.5s: at least 1
		{250 * time.Millisecond, false, 1, 0, 2}, // half a token
		{500 * time.Millisecond, true, 0, 0, 2},  // 1 token earned and spent; 3 missing: 0.5+1.5
		{-time.Second, false, 1, 0, 2},           // a clock going back earns nothing
		{10 * time.Second, true, 0, 2, 11},
	}
	for i, tt := range tests {
		now := t0.Add(tt.at)
		ok, retryAfter := b.take(now)
		remaining, reset := b.state(now)
		if ok != tt.ok || retryAfter != tt.retryAfter || remaining != tt.remaining || reset != t0.Unix()+tt.reset {
			t.Errorf("step %d: take = %v, %d; state = %d, %d; want %v, %d; %d, %d",
				i, ok, retryAfter, remaining, reset-t0.Unix(), tt.ok, tt.retryAfter, tt.remaining, tt.reset)
		}
	}
}

func TestDecide(t *testing.T) {
	f := Faults{ProxyError: 0.2, ServerErrorBeforeCommit: 0.2, ResetBeforeCommit: 0.2, ServerErrorAfterCommit: 0.2, ResetAfterCommit: 0.2}
	counts := map[Fault]int{}
	statuses := map[int]int{}
	for n := range 5000 {
		d := f.decide(1, "POST /payments", "key:k", n, true)
		if again := f.decide(1, "POST /payments", "key:k", n, true); again != d {
			t.Fatalf("decide is not a function of its inputs: %+v, %+v", d, again)
		}
		counts[d.fault]++
		if d.fault == FaultProxyError {
			statuses[d.proxyStatus]++
		}
	}
	if counts[FaultNone] != 0 {
		t.Errorf("probabilities summing to 1 left %d requests unfaulted", counts[FaultNone])
	}
	for _, fault := range []Fault{FaultProxyError, FaultServerErrorBeforeCommit, FaultResetBeforeCommit, FaultServerErrorAfterCommit, FaultResetAfterCommit} {
		if c := counts[fault]; c < 850 || c > 1150 {
			t.Errorf("%v: %d of 5000, want about 1000", fault, c)
		}
	}
	for _, s := range []int{502, 503, 504} {
		if statuses[s] == 0 {
			t.Errorf("proxy status %d never chosen: %v", s, statuses)
		}
	}

	over := Faults{ServerErrorBeforeCommit: 0.9, ResetAfterCommit: 0.9}
	for n := range 1000 {
		if d := over.decide(1, "r", "i", n, true); d.fault == FaultNone {
			t.Fatal("probabilities summing past 1 left a request unfaulted")
		}
	}
	if d := f.decide(1, "r", "i", 0, false); d.fault != FaultNone {
		t.Errorf("unfaultable request got %v", d.fault)
	}
	sched := Faults{ServerErrorBeforeCommit: 1, Schedule: []Fault{FaultResetAfterCommit, FaultNone}}
	for n, want := range []Fault{FaultResetAfterCommit, FaultNone, FaultServerErrorBeforeCommit} {
		if d := sched.decide(1, "r", "i", n, true); d.fault != want {
			t.Errorf("arrival %d: %v, want %v", n, d.fault, want)
		}
	}
	jit := Faults{Latency: time.Second, LatencyJitter: time.Second}
	for n := range 100 {
		if d := jit.decide(1, "r", "i", n, false); d.latency < time.Second || d.latency >= 2*time.Second {
			t.Fatalf("latency %v outside [1s, 2s)", d.latency)
		}
	}
}

func TestFaultString(t *testing.T) {
	if got := FaultResetAfterCommit.String(); got != "ResetAfterCommit" {
		t.Errorf("String() = %q", got)
	}
	if got := Fault(42).String(); got != "Fault(42)" {
		t.Errorf("String() = %q", got)
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

func TestReachableURL(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"0.0.0.0:8080", "http://127.0.0.1:8080"},
		{"[::]:8080", "http://127.0.0.1:8080"},
		{":8080", "http://127.0.0.1:8080"},
		{"[::1]:8080", "http://[::1]:8080"},
		{"192.0.2.7:1", "http://192.0.2.7:1"},
		{"/tmp/sock", "http:///tmp/sock"},
	} {
		if got := reachableURL(fakeAddr(tt.addr)); got != tt.want {
			t.Errorf("reachableURL(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
