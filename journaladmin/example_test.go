package journaladmin_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

// A service mounts the handler on its admin listener, bound to 127.0.0.1,
// so that an operator can see its pending entries while it runs:
// spotflow-journal list -admin http://127.0.0.1:9090/spotflow/journal.
// Here an httptest server stands in for that listener.
func ExampleNewHandler() {
	journal := spotflowhttp.NewMemoryJournal() // the service's journal: boltjournal.Open(...) in production
	journal.Record(context.Background(), spotflowhttp.Entry{
		Key: "3f2a", Reference: "order-1002", Method: http.MethodPost,
		URL:  "https://api.spotflow.co/api/v1/payments",
		Time: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC),
	})
	dir, _ := os.MkdirTemp("", "audit")
	defer os.RemoveAll(dir)
	h, err := journaladmin.NewHandler(journal,
		journaladmin.AllowResolve(func(_ context.Context, r journaladmin.AuditRecord) error {
			return journaladmin.AppendAudit(filepath.Join(dir, "journal.audit.jsonl"), r)
		}))
	if err != nil {
		log.Fatal(err)
	}
	admin := http.NewServeMux()
	admin.Handle("/spotflow/journal/", http.StripPrefix("/spotflow/journal", h))
	srv := httptest.NewServer(admin) // in a service: http.ListenAndServe("127.0.0.1:9090", admin)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/spotflow/journal/entries")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(b))
	// Output:
	// {"key":"3f2a","reference":"order-1002","account":"","method":"POST","url":"https://api.spotflow.co/api/v1/payments","time":"2026-12-07T01:00:00Z","owner":"","until":"0001-01-01T00:00:00Z","sealed":false,"bodyMissing":false}
}
