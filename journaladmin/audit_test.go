package journaladmin_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

func TestAppendAuditAppendsOneLineEachToAPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for _, key := range []string{"k1", "k2"} {
		r := journaladmin.AuditRecord{Time: time.Unix(0, 0), User: "ada", Key: key, Outcome: "created", By: "person", Note: "two\nlines"}
		if err := journaladmin.AppendAudit(path, r); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), b)
	}
	var r journaladmin.AuditRecord
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil || r.Key != "k2" || r.Note != "two\nlines" {
		t.Errorf("second line %q: %+v %v", lines[1], r, err)
	}
}
