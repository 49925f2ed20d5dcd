package spotflowtest_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

func TestParseFaults(t *testing.T) {
	flaky, err := spotflowtest.ParseFaults("flaky")
	if err != nil || flaky.ResetAfterCommit != 0.02 || flaky.Latency != 20*time.Millisecond {
		t.Fatalf("flaky = %+v, %v", flaky, err)
	}
	noLatency := flaky
	noLatency.Latency = 0
	tests := []struct {
		spec string
		want spotflowtest.Faults
	}{
		{"", spotflowtest.Faults{}},
		{"none", spotflowtest.Faults{}},
		{"flaky,latency=0s", noLatency},
		{"flaky,none", spotflowtest.Faults{}},
		{"reset_after=0.05, server_error_before=0.02,proxy_error=1", spotflowtest.Faults{ResetAfterCommit: 0.05, ServerErrorBeforeCommit: 0.02, ProxyError: 1}},
		{"server_error_after=0.1,reset_before=0.2,jitter=1s,reads=true", spotflowtest.Faults{ServerErrorAfterCommit: 0.1, ResetBeforeCommit: 0.2, LatencyJitter: time.Second, Reads: true}},
		{"outage=2s+5s,outage=0s+1ms", spotflowtest.Faults{Outages: []spotflowtest.Window{{Start: 2 * time.Second, Duration: 5 * time.Second}, {Duration: time.Millisecond}}}},
		{"schedule=reset_after:none:proxy_error", spotflowtest.Faults{Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit, spotflowtest.FaultNone, spotflowtest.FaultProxyError}}},
	}
	for _, tt := range tests {
		got, err := spotflowtest.ParseFaults(tt.spec)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseFaults(%q) = %+v, %v; want %+v", tt.spec, got, err, tt.want)
		}
	}
}

func TestParseFaultsErrors(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{"wild", `unknown fault profile "wild" (profiles: none, flaky, uncertain, slow, chaos`},
		{"flaky,,", `unknown fault profile ""`},
		{"reset_after=2", `fault "reset_after=2": want a probability in [0,1]`},
		{"proxy_error=-0.1", `want a probability`},
		{"latency=soon", `fault "latency=soon": want a duration`},
		{"reads=maybe", `want true or false`},
		{"outage=5s", `want START+LENGTH`},
		{"outage=5s+0s", `want START+LENGTH`},
		{"schedule=boom", `unknown fault "boom" in schedule`},
		{"explode=1", `unknown name "explode"`},
	} {
		_, err := spotflowtest.ParseFaults(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseFaults(%q) = %v, want an error with %q", tt.spec, err, tt.want)
		}
	}
}

func TestFaultProfilesParse(t *testing.T) {
	names := spotflowtest.FaultProfiles()
	if strings.Join(names, ",") != "none,flaky,uncertain,slow,chaos" {
		t.Errorf("FaultProfiles() = %v", names)
	}
	seen := map[string]bool{}
	for _, n := range names {
		f, err := spotflowtest.ParseFaults(n)
		if err != nil {
			t.Errorf("profile %s: %v", n, err)
		}
		key := fmt.Sprintf("%+v", f)
		if seen[key] {
			t.Errorf("profile %s is the same as another", n)
		}
		seen[key] = true
	}
}

func TestWebhooksValidate(t *testing.T) {
	if err := (spotflowtest.Webhooks{}).Validate(); err != nil {
		t.Errorf("zero Webhooks: %v", err)
	}
	if err := (spotflowtest.Webhooks{Secret: "whsec_c2VjcmV0"}).Validate(); err != nil {
		t.Errorf("a good secret: %v", err)
	}
	for _, tt := range []struct {
		w    spotflowtest.Webhooks
		want string
	}{
		{spotflowtest.Webhooks{Secret: "sk_test_x"}, "Webhooks.Secret"},
		{spotflowtest.Webhooks{Secret: "whsec_!!"}, "Webhooks.Secret"},
		{spotflowtest.Webhooks{Duplicates: 1.5}, "Webhooks.Duplicates"},
		{spotflowtest.Webhooks{Timeout: -1}, "Webhooks.Timeout"},
	} {
		err := tt.w.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "sk_test_x") {
			t.Errorf("Validate(%+v) = %v, want an error naming %s and not the secret", tt.w, err, tt.want)
		}
	}
}
