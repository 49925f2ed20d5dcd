package journaladmin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

const secretBody = `{"reference":"order-1","customer":{"email":"ada-7b1f@example.com"}}`

func fill(t *testing.T, j spotflowhttp.Journal) {
	t.Helper()
	now := time.Now()
	for _, e := range []spotflowhttp.Entry{
		{Key: "k1", Reference: "order-1", Method: "POST", URL: "https://api.spotflow.co/api/v1/payments",
			Body: []byte(secretBody), Time: now.Add(-2 * time.Hour)},
		{Key: "k/2", Reference: "order-2", Account: "m-9", Method: "POST", URL: "https://api.spotflow.co/api/v1/transfers",
			Body: []byte(`{"reference":"order-2"}`), Time: now.Add(-time.Hour), Owner: "call-live", Until: now.Add(time.Hour)},
	} {
		if err := j.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func serve(t *testing.T, j spotflowhttp.Journal, opts ...journaladmin.Option) *httptest.Server {
	t.Helper()
	h, err := journaladmin.NewHandler(j, opts...)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/journal/", http.StripPrefix("/admin/journal", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestListServesEveryEntryAsAJSONLineWithoutItsBody(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	fill(t, j)
	srv := serve(t, j)
	status, _, body := do(t, "GET", srv.URL+"/admin/journal/entries", "", "")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if strings.Contains(body, "ada-7b1f") || strings.Contains(body, `"body"`) {
		t.Errorf("the list shows a body: %s", body)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(lines), body)
	}
	var v journaladmin.EntryView
	if err := json.Unmarshal([]byte(lines[1]), &v); err != nil {
		t.Fatal(err)
	}
	if v.Key != "k/2" || v.Reference != "order-2" || v.Account != "m-9" || v.Owner != "call-live" || v.Method != "POST" {
		t.Errorf("second line = %+v", v)
	}
	for _, f := range []string{`"key"`, `"reference"`, `"method"`, `"url"`, `"time"`, `"until"`, `"owner"`, `"sealed"`, `"bodyMissing"`} {
		if !strings.Contains(lines[0], f) {
			t.Errorf("line lacks %s: %s", f, lines[0])
		}
	}
}

func TestShowGivesTheBodyOnlyWhenTheServiceAllowsIt(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	fill(t, j)
	ro := serve(t, j)
	if status, _, body := do(t, "GET", ro.URL+"/admin/journal/entries/k1?body=1", "", ""); status != 403 {
		t.Errorf("body without WithBodies: status %d %s", status, body)
	}
	if status, _, body := do(t, "GET", ro.URL+"/admin/journal/entries/k1", "", ""); status != 200 || strings.Contains(body, "ada-7b1f") {
		t.Errorf("show without body: status %d %s", status, body)
	}
	if status, _, body := do(t, "GET", ro.URL+"/admin/journal/entries/k%2F2", "", ""); status != 200 || !strings.Contains(body, "order-2") {
		t.Errorf("show an escaped key: status %d %s", status, body)
	}
	if status, _, _ := do(t, "GET", ro.URL+"/admin/journal/entries/nope", "", ""); status != 404 {
		t.Errorf("unknown key: status %d", status)
	}
	withBodies := serve(t, j, journaladmin.WithBodies())
	status, _, body := do(t, "GET", withBodies.URL+"/admin/journal/entries/k1?body=1", "", "")
	var v journaladmin.EntryView
	if status != 200 || json.Unmarshal([]byte(body), &v) != nil || string(v.Body) != secretBody {
		t.Errorf("body with WithBodies: status %d %s", status, body)
	}
}

func TestResolveIsRefusedUnlessTheServiceOptsIn(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	fill(t, j)
	srv := serve(t, j)
	status, _, body := do(t, "POST", srv.URL+"/admin/journal/entries/k1/resolve", "", `{"outcome":"created"}`)
	if status != 403 {
		t.Errorf("status %d %s, want 403", status, body)
	}
	if es, _ := j.Pending(context.Background()); len(es) != 2 {
		t.Errorf("%d pending, want 2", len(es))
	}
}

func TestResolveWritesTheAuditRecordAndSettles(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	fill(t, j)
	var audited []journaladmin.AuditRecord
	srv := serve(t, j, journaladmin.AllowResolve(func(_ context.Context, r journaladmin.AuditRecord) error {
		audited = append(audited, r)
		return nil
	}))
	status, _, body := do(t, "POST", srv.URL+"/admin/journal/entries/k1/resolve", "",
		`{"outcome":"not_created","note":"card declined on the phone","user":"ada","host":"laptop"}`)
	if status != 200 {
		t.Fatalf("status %d %s", status, body)
	}
	if len(audited) != 1 || audited[0].Key != "k1" || audited[0].Outcome != "not_created" || audited[0].By != "person" ||
		audited[0].User != "ada (unverified)" || audited[0].Note != "card declined on the phone" || audited[0].Reference != "order-1" {
		t.Errorf("audited %+v", audited)
	}
	if es, _ := j.Pending(context.Background()); len(es) != 1 || es[0].Key != "k/2" {
		t.Errorf("pending after: %+v", es)
	}
	status, _, body = do(t, "POST", srv.URL+"/admin/journal/entries/k%2F2/resolve", "", `{"outcome":"created"}`)
	if status != 409 || !strings.Contains(body, "call-live") {
		t.Errorf("held entry: status %d %s, want 409 naming the owner", status, body)
	}
	if status, _, body = do(t, "POST", srv.URL+"/admin/journal/entries/k1/resolve", "", `{"outcome":"created"}`); status != 404 {
		t.Errorf("settled entry: status %d %s, want 404", status, body)
	}
	if status, _, body = do(t, "POST", srv.URL+"/admin/journal/entries/k1/resolve", "", `{"outcome":"needs_human"}`); status != 400 {
		t.Errorf("bad outcome: status %d %s, want 400", status, body)
	}
	if len(audited) != 1 {
		t.Errorf("%d audit records, want 1", len(audited))
	}
}

func TestResolveKeepsTheEntryWhenTheAuditFails(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	fill(t, j)
	srv := serve(t, j, journaladmin.AllowResolve(func(context.Context, journaladmin.AuditRecord) error {
		return errors.New("audit disk full")
	}))
	status, _, body := do(t, "POST", srv.URL+"/admin/journal/entries/k1/resolve", "", `{"outcome":"created"}`)
	if status != 500 || !strings.Contains(body, "audit disk full") {
		t.Errorf("status %d %s, want 500 with the audit error", status, body)
	}
	if es, _ := j.Pending(context.Background()); len(es) != 2 {
		t.Errorf("%d pending, want 2", len(es))
	}
}

func TestTokenAndOperatorAreChecked(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	fill(t, j)
	var users []string
	srv := serve(t, j, journaladmin.WithToken("s3cret"),
		journaladmin.WithOperator(func(r *http.Request) string { return r.Header.Get("X-Operator") }),
		journaladmin.AllowResolve(func(_ context.Context, r journaladmin.AuditRecord) error {
			users = append(users, r.User)
			return nil
		}))
	for _, tok := range []string{"", "wrong", "s3cret2"} {
		if status, _, _ := do(t, "GET", srv.URL+"/admin/journal/entries", tok, ""); status != 401 {
			t.Errorf("token %q: status %d, want 401", tok, status)
		}
	}
	if status, _, _ := do(t, "GET", srv.URL+"/admin/journal/entries", "s3cret", ""); status != 200 {
		t.Errorf("right token: status %d", status)
	}
	if status, _, _ := do(t, "POST", srv.URL+"/admin/journal/entries/k1/resolve", "s3cret", `{"outcome":"created","user":"mallory"}`); status != 401 {
		t.Errorf("no operator: status %d, want 401", status)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/admin/journal/entries/k1/resolve", strings.NewReader(`{"outcome":"created","user":"mallory"}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("X-Operator", "ada")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(users) != 1 || users[0] != "ada" {
		t.Errorf("status %d, users %v, want ada as the service knows her", resp.StatusCode, users)
	}
}

// partlySealed is a journal whose Pending returns entries with an error,
// as a sealed journal does for the entries no key opens.
type partlySealed struct{ spotflowhttp.Journal }

func (p partlySealed) Pending(ctx context.Context) ([]spotflowhttp.Entry, error) {
	es, _ := p.Journal.Pending(ctx)
	return es, errors.New("entry \"k9\" (key id 0011):\nno key opens it")
}

func TestEntriesReturnedWithAnErrorAreServedWithAWarning(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	fill(t, j)
	srv := serve(t, partlySealed{j})
	status, h, body := do(t, "GET", srv.URL+"/admin/journal/entries", "", "")
	if status != 200 || strings.Count(body, "\n") != 2 {
		t.Errorf("status %d %s, want the 2 entries", status, body)
	}
	if w := h.Get("Spotflow-Journal-Warning"); !strings.Contains(w, "k9") || strings.Contains(w, "\n") {
		t.Errorf("warning %q", w)
	}
	empty := serve(t, partlySealed{spotflowhttp.NewMemoryJournal()})
	if status, _, _ := do(t, "GET", empty.URL+"/admin/journal/entries", "", ""); status != 500 {
		t.Errorf("error without entries: status %d, want 500", status)
	}
}

func TestNewHandlerRefusesBadOptions(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	for name, o := range map[string]journaladmin.Option{
		"empty token": journaladmin.WithToken(""),
		"nil audit":   journaladmin.AllowResolve(nil),
		"nil op":      journaladmin.WithOperator(nil),
	} {
		if _, err := journaladmin.NewHandler(j, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := journaladmin.NewHandler(nil); err == nil {
		t.Error("nil journal: no error")
	}
}
