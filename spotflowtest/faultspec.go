package spotflowtest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// faultProfiles are the named Faults that ParseFaults knows, in the order
// FaultProfiles lists them.
var faultProfiles = []struct {
	name   string
	faults Faults
}{
	{"none", Faults{}},
	// The mix spotflow-demo runs: about one create in ten fails, two in a
	// hundred after the payment was made.
	{"flaky", Faults{
		ProxyError:              0.03,
		ServerErrorBeforeCommit: 0.02,
		ResetBeforeCommit:       0.01,
		ServerErrorAfterCommit:  0.02,
		ResetAfterCommit:        0.02,
		Latency:                 20 * time.Millisecond,
		LatencyJitter:           40 * time.Millisecond,
	}},
	// Only the failures that leave the outcome unknown: the payment is
	// made, and the answer is a 500 or nothing at all.
	{"uncertain", Faults{
		ServerErrorAfterCommit: 0.1,
		ResetAfterCommit:       0.1,
	}},
	// Every request takes one to two seconds, for testing deadlines.
	{"slow", Faults{
		Latency:       time.Second,
		LatencyJitter: time.Second,
	}},
	// A quarter of the requests, reads included, fail in every way.
	{"chaos", Faults{
		ProxyError:              0.05,
		ServerErrorBeforeCommit: 0.05,
		ResetBeforeCommit:       0.05,
		ServerErrorAfterCommit:  0.05,
		ResetAfterCommit:        0.05,
		Reads:                   true,
		Latency:                 50 * time.Millisecond,
		LatencyJitter:           100 * time.Millisecond,
	}},
}

// faultNames maps the names ParseFaults uses for the five faults to them.
var faultNames = []struct {
	name  string
	fault Fault
}{
	{"proxy_error", FaultProxyError},
	{"server_error_before", FaultServerErrorBeforeCommit},
	{"reset_before", FaultResetBeforeCommit},
	{"server_error_after", FaultServerErrorAfterCommit},
	{"reset_after", FaultResetAfterCommit},
}

// FaultProfiles returns the names of the profiles [ParseFaults] knows:
//
//	none       no faults (the zero Faults)
//	flaky      the mix spotflow-demo runs: 3 % proxy errors, 2 % 500s and 1 %
//	           resets before commit, 2 % 500s and 2 % resets after commit,
//	           20 ms latency plus up to 40 ms
//	uncertain  10 % 500s and 10 % resets after commit, nothing else
//	slow       1 s latency plus up to 1 s
//	chaos      5 % of each fault, reads included, 50 ms latency plus up to 100 ms
func FaultProfiles() []string {
	names := make([]string, len(faultProfiles))
	for i, p := range faultProfiles {
		names[i] = p.name
	}
	return names
}

// ParseFaults reads a [Faults] from text, as a command line or an
// environment variable gives it. The text is a comma-separated list of
// items applied left to right, so that a later item overrides an earlier
// one; an item is a profile name (see [FaultProfiles]), which replaces
// everything before it, or NAME=VALUE:
//
//	proxy_error=P server_error_before=P reset_before=P
//	server_error_after=P reset_after=P   a probability P in [0,1]
//	latency=D jitter=D                    a Go duration, such as 20ms
//	reads=true|false                      fault reads too (Faults.Reads)
//	outage=START+LENGTH                   an outage window, such as 2s+5s; repeatable
//	schedule=F:F:...                      Faults.Schedule: the faults of the
//	                                      first arrivals, each a name above or none
//
// For example "flaky,latency=0s" is the flaky mix without its latency, and
// "schedule=reset_after" makes every first attempt commit and then lose its
// connection. The empty text is the zero Faults. An unknown name or a bad
// value is an error naming the item.
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(spec) == "" {
		return f, nil
	}
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		name, value, isSetting := strings.Cut(item, "=")
		if !isSetting {
			p, ok := faultProfile(item)
			if !ok {
				return Faults{}, fmt.Errorf("unknown fault profile %q (profiles: %s; or NAME=VALUE items)", item, strings.Join(FaultProfiles(), ", "))
			}
			f = p
			continue
		}
		if err := f.set(name, value); err != nil {
			return Faults{}, fmt.Errorf("fault %q: %w", item, err)
		}
	}
	return f, nil
}

func faultProfile(name string) (Faults, bool) {
	for _, p := range faultProfiles {
		if p.name == name {
			return p.faults, true
		}
	}
	return Faults{}, false
}

// set applies one NAME=VALUE item of ParseFaults.
func (f *Faults) set(name, value string) error {
	probabilities := map[string]*float64{
		"proxy_error":         &f.ProxyError,
		"server_error_before": &f.ServerErrorBeforeCommit,
		"reset_before":        &f.ResetBeforeCommit,
		"server_error_after":  &f.ServerErrorAfterCommit,
		"reset_after":         &f.ResetAfterCommit,
	}
	durations := map[string]*time.Duration{"latency": &f.Latency, "jitter": &f.LatencyJitter}
	if p, ok := probabilities[name]; ok {
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < 0 || v > 1 {
			return errors.New("want a probability in [0,1]")
		}
		*p = v
		return nil
	}
	if d, ok := durations[name]; ok {
		v, err := time.ParseDuration(value)
		if err != nil || v < 0 {
			return errors.New("want a duration such as 20ms")
		}
		*d = v
		return nil
	}
	switch name {
	case "reads":
		v, err := strconv.ParseBool(value)
		if err != nil {
			return errors.New("want true or false")
		}
		f.Reads = v
	case "outage":
		w, err := parseWindow(value)
		if err != nil {
			return err
		}
		f.Outages = append(f.Outages, w)
	case "schedule":
		s, err := parseSchedule(value)
		if err != nil {
			return err
		}
		f.Schedule = s
	default:
		return fmt.Errorf("unknown name %q (names: proxy_error, server_error_before, reset_before, server_error_after, reset_after, latency, jitter, reads, outage, schedule)", name)
	}
	return nil
}

// parseWindow reads START+LENGTH, such as 2s+5s.
func parseWindow(value string) (Window, error) {
	start, length, ok := strings.Cut(value, "+")
	s, err1 := time.ParseDuration(start)
	l, err2 := time.ParseDuration(length)
	if !ok || err1 != nil || err2 != nil || s < 0 || l <= 0 {
		return Window{}, errors.New("want START+LENGTH, such as 2s+5s")
	}
	return Window{Start: s, Duration: l}, nil
}

// parseSchedule reads F:F:..., each F a fault name or none.
func parseSchedule(value string) ([]Fault, error) {
	var out []Fault
	for name := range strings.SplitSeq(value, ":") {
		f, ok := FaultNone, name == "none"
		for _, n := range faultNames {
			if n.name == name {
				f, ok = n.fault, true
			}
		}
		if !ok {
			return nil, fmt.Errorf("unknown fault %q in schedule (faults: none, proxy_error, server_error_before, reset_before, server_error_after, reset_after)", name)
		}
		out = append(out, f)
	}
	return out, nil
}
