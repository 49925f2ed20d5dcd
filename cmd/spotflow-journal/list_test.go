package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestListShowsPendingEntriesOldestFirstWithoutBodiesAndChangesNothing(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := sj(t, nil, "list", "-file", path)
	r.want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want a header and 3 entries:\n%s", len(lines), r.stdout)
	}
	for i, want := range []string{"KEY", "key-old", "key-shop", "key-live"} {
		if !strings.HasPrefix(lines[i], want+" ") {
			t.Errorf("line %d = %q, want it to start with %s", i, lines[i], want)
		}
	}
	for _, part := range []string{"order-1", "https://api.spotflow.co/api/v1/payments", "3h0m", "free", "call-4b1d until ", "shop-7", "no-body"} {
		if !strings.Contains(r.stdout, part) {
			t.Errorf("list lacks %q:\n%s", part, r.stdout)
		}
	}
	if strings.Contains(r.stdout, secret) {
		t.Errorf("list shows a body:\n%s", r.stdout)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("list changed the journal file")
	}
	for _, e := range pendingIn(t, path) {
		if e.Key == "key-live" && e.Owner != "call-4b1d" {
			t.Errorf("key-live's claim is %q after list, want call-4b1d's kept", e.Owner)
		}
	}
}

func TestListJSONPrintsOneObjectPerEntryWithStableFields(t *testing.T) {
	now := time.Now()
	path := fillBolt(t, nil, testEntries(now))
	r := sj(t, nil, "list", "-json", "-file", path)
	r.want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), r.stdout)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(lines[2]), &v); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"key": "key-live", "reference": "order-2", "method": "POST",
		"url": "https://api.spotflow.co/api/v1/payments", "owner": "call-4b1d", "sealed": false, "bodyMissing": false} {
		if v[k] != want {
			t.Errorf("%s = %v, want %v", k, v[k], want)
		}
	}
	if _, ok := v["body"]; ok {
		t.Error("list -json has a body")
	}
	tm, err := time.Parse(time.RFC3339, v["time"].(string))
	if err != nil || tm.Sub(now.Add(-time.Minute)).Abs() > time.Second {
		t.Errorf("time = %v (%v), want a minute ago in RFC 3339", v["time"], err)
	}
}

func TestShowPrintsTheBodyOnlyWithBody(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	r := sj(t, nil, "show", "-file", path, "key-old")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "order-1") || strings.Contains(r.stdout, secret) {
		t.Errorf("show without -body:\n%s", r.stdout)
	}
	r = sj(t, nil, "show", "-file", path, "-body", "key-old")
	r.want(t, 0)
	if !strings.Contains(r.stdout, secret) || !strings.Contains(r.stdout, "Content-Type: application/json") {
		t.Errorf("show -body lacks the body or its header:\n%s", r.stdout)
	}
	r = sj(t, nil, "show", "-file", path, "-body", "-json", "key-old")
	var v struct{ Body []byte }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || !strings.Contains(string(v.Body), secret) {
		t.Errorf("show -body -json: %v\n%s", err, r.stdout)
	}
	sj(t, nil, "show", "-file", path, "no-such-key").want(t, 2, `no pending entry with key "no-such-key"`)
}

func TestListOfAFileARunningServiceHoldsSaysSoQuickly(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	startService(t, path)
	r := sj(t, nil, "list", "-file", path)
	r.want(t, 1, "in use by another process", "-admin")
	if r.took > 5*time.Second {
		t.Errorf("took %v, want a few seconds at most", r.took)
	}
	if strings.Contains(strings.ToLower(r.stderr), "timeout") {
		t.Errorf("stderr says timeout: %s", r.stderr)
	}
}

func TestARunningServicesEntriesAreSeenThroughItsAdminHandler(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	admin := startService(t, path)
	r := sj(t, nil, "list", "-admin", admin)
	r.want(t, 0)
	for _, k := range []string{"key-old", "key-live", "key-shop"} { // the service freed every claim when it opened the file
		if !strings.Contains(r.stdout, k) {
			t.Errorf("list -admin lacks %s:\n%s", k, r.stdout)
		}
	}
	r = sj(t, nil, "show", "-admin", admin, "key-old")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "order-1") || strings.Contains(r.stdout, secret) {
		t.Errorf("show -admin:\n%s", r.stdout)
	}
	sj(t, nil, "show", "-admin", admin, "-body", "key-old").want(t, 1, "does not serve bodies")
	sj(t, nil, "show", "-admin", admin, "nope").want(t, 2, "no pending entry")

	r = sj(t, nil, "resolve", "-admin", admin, "-outcome", "not_created", "-note", "refunded by hand", "key-old")
	r.want(t, 0)
	if !strings.Contains(r.stdout, "key-old  order-1  not_created by person") {
		t.Errorf("resolve -admin printed:\n%s", r.stdout)
	}
	audit, err := os.ReadFile(path + ".service-audit.jsonl")
	if err != nil || !strings.Contains(string(audit), `"note":"refunded by hand"`) || !strings.Contains(string(audit), "(unverified)") {
		t.Errorf("the service's audit file: %v\n%s", err, audit)
	}
	r = sj(t, nil, "list", "-admin", admin, "-json")
	if strings.Contains(r.stdout, "key-old") || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("after resolve -admin:\n%s", r.stdout)
	}
}
