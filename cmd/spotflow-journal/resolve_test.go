package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

func TestResolveSettlesTheEntryAndAppendsAnAuditRecord(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	r := sj(t, nil, "resolve", "-file", path, "-outcome", "created", "-note", "customer confirmed by phone", "key-old")
	r.want(t, 0, "audit record appended to "+path+".audit.jsonl")
	if !strings.HasPrefix(r.stdout, "key-old  order-1  created by person") || !strings.Contains(r.stdout, "note: customer confirmed by phone") {
		t.Errorf("resolve printed:\n%s", r.stdout)
	}
	es := pendingIn(t, path)
	if len(es) != 2 {
		t.Errorf("%d pending after resolve, want 2", len(es))
	}
	for _, e := range es {
		if e.Key == "key-old" {
			t.Error("key-old is still pending")
		}
	}
	b, err := os.ReadFile(path + ".audit.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var rec journaladmin.AuditRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("audit file %q: %v", b, err)
	}
	if rec.Key != "key-old" || rec.Reference != "order-1" || rec.Outcome != "created" || rec.By != "person" ||
		rec.Note != "customer confirmed by phone" || rec.User == "" || rec.Journal != path || time.Since(rec.Time) > time.Minute {
		t.Errorf("audit record %+v", rec)
	}
	if fi, _ := os.Stat(path + ".audit.jsonl"); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
	sj(t, nil, "resolve", "-file", path, "-outcome", "created", "key-old").want(t, 2, `no pending entry with key "key-old"`)
}

func TestResolveAppendsToTheAuditFileGivenAndPrintsJSON(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	audit := filepath.Join(t.TempDir(), "decisions.jsonl")
	var rec journaladmin.AuditRecord
	r := sj(t, nil, "resolve", "-file", path, "-outcome", "not_created", "-audit", audit, "-json", "key-shop")
	r.want(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.Key != "key-shop" || rec.Outcome != "not_created" || rec.Account != "shop-7" {
		t.Errorf("resolve -json printed %q (%v)", r.stdout, err)
	}
	if b, _ := os.ReadFile(audit); !strings.Contains(string(b), `"key":"key-shop"`) {
		t.Errorf("-audit file: %s", b)
	}
	if _, err := os.Stat(path + ".audit.jsonl"); !os.IsNotExist(err) {
		t.Errorf("the default audit file was written too: %v", err)
	}
}

func TestResolveKeepsTheEntryWhenTheAuditCannotBeWritten(t *testing.T) {
	path := fillBolt(t, nil, testEntries(time.Now()))
	audit := filepath.Join(t.TempDir(), "no-such-dir", "audit.jsonl")
	sj(t, nil, "resolve", "-file", path, "-audit", audit, "-outcome", "created", "key-old").want(t, 1, "audit", "stays pending")
	if len(pendingIn(t, path)) != 3 {
		t.Error("the entry was removed without its audit record")
	}
}
