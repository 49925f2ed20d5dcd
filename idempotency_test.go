package spotflowhttp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// recorder is an in-memory base that answers 200 and keeps what it was sent.
type recorder struct {
	mu     sync.Mutex
	keys   []string
	bodies []string
	reqs   []*http.Request
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var b []byte
	if r.Body != nil {
		b, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	rec.mu.Lock()
	rec.keys = append(rec.keys, r.Header.Get("Idempotency-Key"))
	rec.bodies = append(rec.bodies, string(b))
	rec.reqs = append(rec.reqs, r)
	rec.mu.Unlock()
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

var hexKey = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestKeyChoice(t *testing.T) {
	ctxKey := spotflowhttp.ContextWithIdempotencyKey(context.Background(), "order-42")
	tests := []struct {
		name   string
		method string
		header string
		ctx    context.Context
		opts   []spotflowhttp.Option
		want   string // "" none, "hex" generated
	}{
		{"POST gets a key", "POST", "", nil, nil, "hex"},
		{"PATCH gets a key", "PATCH", "", nil, nil, "hex"},
		{"GET gets none", "GET", "", nil, nil, ""},
		{"PUT gets none", "PUT", "", nil, nil, ""},
		{"caller's header wins", "POST", "mine", ctxKey, nil, "mine"},
		{"caller's X-Idempotency-Key wins", "POST", "X-Idempotency-Key: theirs", ctxKey, nil, "theirs"},
		{"caller's X-Idempotency-Key on GET", "GET", "X-Idempotency-Key: theirs", nil, nil, "theirs"},
		{"context key", "POST", "", ctxKey, nil, "order-42"},
		{"context key on GET", "GET", "", ctxKey, nil, "order-42"},
		{"key func", "POST", "", nil, []spotflowhttp.Option{spotflowhttp.WithKeyFunc(func(r *http.Request) (string, error) { return "from-func", nil })}, "from-func"},
		{"context beats key func", "POST", "", ctxKey, []spotflowhttp.Option{spotflowhttp.WithKeyFunc(func(r *http.Request) (string, error) { return "from-func", nil })}, "order-42"},
		{"empty key func result falls back", "POST", "", nil, []spotflowhttp.Option{spotflowhttp.WithKeyFunc(func(r *http.Request) (string, error) { return "", nil })}, "hex"},
		{"key methods replaced", "PUT", "", nil, []spotflowhttp.Option{spotflowhttp.WithKeyMethods("PUT")}, "hex"},
		{"key methods replaced, POST none", "POST", "", nil, []spotflowhttp.Option{spotflowhttp.WithKeyMethods("PUT")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			req, _ := http.NewRequestWithContext(ctx, tt.method, "https://api.spotflow.co/api/v1/payments", strings.NewReader(`{"a":1}`))
			if name, v, ok := strings.Cut(tt.header, ": "); ok {
				req.Header.Set(name, v)
			} else if tt.header != "" {
				req.Header.Set("Idempotency-Key", tt.header)
			}
			resp, err := spotflowhttp.NewTransport(rec, tt.opts...).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got := rec.keys[0]
			switch {
			case tt.want == "hex" && !hexKey.MatchString(got), tt.want != "hex" && got != tt.want:
				t.Errorf("key sent = %q, want %q", got, tt.want)
			}
			if spotflowhttp.IdempotencyKeyOf(resp) != got {
				t.Errorf("IdempotencyKeyOf = %q, sent %q", spotflowhttp.IdempotencyKeyOf(resp), got)
			}
		})
	}
}

func TestIdempotencyHeaderName(t *testing.T) {
	rec := &recorder{}
	tr := spotflowhttp.NewIdempotencyTransport(rec, spotflowhttp.WithIdempotencyHeader("x-idempotency-key"))
	resp, err := tr.RoundTrip(mustRequest(t, "POST", "https://api.spotflow.co/x", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	h := rec.reqs[0].Header
	if !hexKey.MatchString(h.Get("X-Idempotency-Key")) || h.Get("Idempotency-Key") != "" {
		t.Errorf("headers sent: %v", h)
	}
	if spotflowhttp.IdempotencyKeyOf(resp) != h.Get("X-Idempotency-Key") {
		t.Error("IdempotencyKeyOf differs")
	}
}

// A key function's error fails the call before anything is sent.
func TestKeyFuncError(t *testing.T) {
	errNoOrder := errors.New("no order id")
	rec := &recorder{}
	body := newReadCloseCounter(strings.NewReader(`{}`))
	req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", body)
	_, err := spotflowhttp.NewTransport(rec, spotflowhttp.WithKeyFunc(func(*http.Request) (string, error) { return "", errNoOrder })).RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.Is(err, errNoOrder) || !errors.As(err, &e) || e.Attempts != 0 || e.Uncertain {
		t.Fatalf("err = %#v", err)
	}
	if len(rec.keys) != 0 || body.closes.Load() != 1 {
		t.Errorf("sent %d, body closed %d times", len(rec.keys), body.closes.Load())
	}
}

// Different calls never share a key.
func TestKeysUnique(t *testing.T) {
	rec := &recorder{}
	tr := spotflowhttp.NewIdempotencyTransport(rec)
	const n = 100_000
	seen := make(map[string]struct{}, n)
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		k := spotflowhttp.IdempotencyKeyOf(resp)
		if !hexKey.MatchString(k) {
			t.Fatalf("key %q", k)
		}
		if _, dup := seen[k]; dup {
			t.Fatalf("key %q repeated after %d calls", k, i)
		}
		seen[k] = struct{}{}
		rec.keys, rec.bodies, rec.reqs = rec.keys[:0], rec.bodies[:0], rec.reqs[:0]
	}
}

func TestReferenceInjection(t *testing.T) {
	big := `{"a":"` + strings.Repeat("x", 1<<20) + `"}`
	tests := []struct {
		name    string
		body    string
		noGet   bool
		changed bool
	}{
		{"object", `{"amount":5000,"currency":"NGN"}`, false, true},
		{"empty object", `{}`, false, true},
		{"whitespace kept", "  {\n \"amount\": 1 ,\"z\":[1,{\"reference\":\"inner\"}] }\n", false, true},
		{"reference present", `{"reference":"ord-1","amount":1}`, false, false},
		{"empty reference present", `{"reference":"","amount":1}`, false, false},
		{"not JSON", `amount=1`, false, false},
		{"array", `[{"amount":1}]`, false, false},
		{"truncated", `{"amount":1`, false, false},
		{"huge", big, false, false},
		{"no GetBody", `{"amount":1}`, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			req, _ := http.NewRequest("POST", "https://api.spotflow.co/api/v1/payments", strings.NewReader(tt.body))
			if tt.noGet {
				req.GetBody = nil
			}
			resp, err := spotflowhttp.NewTransport(rec, spotflowhttp.WithReference("reference")).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			key := spotflowhttp.IdempotencyKeyOf(resp)
			sent := rec.bodies[0]
			if !tt.changed {
				if sent != tt.body {
					t.Fatalf("body changed:\n%.200s\nwant\n%.200s", sent, tt.body)
				}
				return
			}
			i := strings.LastIndexByte(tt.body, '}')
			sep := ","
			if strings.TrimSpace(tt.body) == "{}" {
				sep = ""
			}
			want := tt.body[:i] + sep + `"reference":"` + key + `"` + tt.body[i:]
			if sent != want {
				t.Fatalf("sent %q\nwant %q", sent, want)
			}
			r := rec.reqs[0]
			if r.ContentLength != int64(len(want)) {
				t.Errorf("ContentLength %d, want %d", r.ContentLength, len(want))
			}
			b, _ := r.GetBody()
			if again, _ := io.ReadAll(b); string(again) != want {
				t.Errorf("GetBody gives %q", again)
			}
		})
	}
}

// A POST whose first two attempts die after the server committed ends with
// one resource, the same key and the same body bytes on all three attempts.
func TestRetryAfterCommitCreatesOnce(t *testing.T) {
	var mu sync.Mutex
	var keys, bodies []string
	created := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		keys, bodies = append(keys, key), append(bodies, string(b))
		n := len(keys)
		if _, ok := created[key]; !ok {
			created[key] = len(created) + 1 // commit
		}
		mu.Unlock()
		if n <= 2 {
			hangUp(w, r)
			return
		}
		w.WriteHeader(201)
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()), spotflowhttp.WithReference("reference"))
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/payments", bytes.NewReader([]byte(`{"amount":100,"currency":"NGN"}`)))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	key := spotflowhttp.IdempotencyKeyOf(resp)
	if resp.StatusCode != 201 || len(keys) != 3 || len(created) != 1 {
		t.Fatalf("status %d, %d attempts, %d resources", resp.StatusCode, len(keys), len(created))
	}
	for i := range keys {
		if keys[i] != key || bodies[i] != bodies[0] || !strings.Contains(bodies[i], key) {
			t.Errorf("attempt %d: key %q body %q; want key %q and the same body", i+1, keys[i], bodies[i], key)
		}
	}
}

// The simulator, with a reset after commit on every first attempt: one
// payment, and the retry gets the original answer replayed.
func TestSimulatorResetAfterCommit(t *testing.T) {
	sim := spotflowtest.NewServer(spotflowtest.WithFaults(spotflowtest.Faults{
		Schedule: []spotflowtest.Fault{spotflowtest.FaultResetAfterCommit},
	}))
	defer sim.Close()
	base := &http.Transport{DisableKeepAlives: true}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()))}
	req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments",
		strings.NewReader(`{"amount":5000,"currency":"NGN","customer":{"email":"a@b.c"},"metadata":{"order_id":"o-1"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	key := spotflowhttp.IdempotencyKeyOf(resp)
	if resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("status %d replayed %q", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
	}
	if n := sim.CountMetadata("order_id", "o-1"); n != 1 {
		t.Errorf("%d payments for the order, want 1", n)
	}
	if n := sim.Arrivals(key); n != 2 {
		t.Errorf("key arrived %d times, want 2", n)
	}
}

// Go's http.Transport resends a request that carries an Idempotency-Key
// when a reused keep-alive connection dies before any byte of the answer.
// The server here answers the first request on each connection and drops
// the connection unanswered after reading the second, as one whose idle
// timeout fires just as a request comes in: every call after the first
// meets a dead connection, and Go resends it on a new one, with the same
// key and body. The retry layer does not see the resend: it counts one
// attempt, and each of its own retries (after a 503) is resent in turn.
func TestKeepAliveResendAndRetry(t *testing.T) {
	srv := newDroppingServer(t)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	retries := map[string]int{}
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithClock(newFakeClock()),
		spotflowhttp.WithOnRetry(func(_ context.Context, ev spotflowhttp.RetryEvent) { retries[ev.IdempotencyKey]++ }))
	const calls = 5
	keys := make([]string, calls)
	for i := range keys {
		url := srv.url
		if i == 2 {
			url += "?fail=1" // its first answer is a 503: the retry layer retries
		}
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"amount":1}`))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		keys[i] = spotflowhttp.IdempotencyKeyOf(resp)
		if resp.StatusCode != 201 || keys[i] == "" {
			t.Fatalf("call %d: status %d, key %q", i+1, resp.StatusCode, keys[i])
		}
	}
	arrivals, bodies := srv.seen()
	for i, key := range keys {
		// The first call opens the first connection; every later attempt
		// meets a dead one and is resent.
		want := 2 * (1 + retries[key])
		if i == 0 {
			want = 1
		}
		if arrivals[key] != want {
			t.Errorf("call %d: key arrived %d times for %d attempts the retry layer counted, want %d",
				i+1, arrivals[key], 1+retries[key], want)
		}
	}
	if retries[keys[2]] != 1 || len(retries) != 1 {
		t.Errorf("retries %v, want one, for call 3", retries)
	}
	for _, b := range bodies {
		if b != `{"amount":1}` {
			t.Errorf("a resend carried body %q", b)
		}
	}
}

// droppingServer is an HTTP/1.1 server on a raw listener that answers the
// first request on each connection, keeping it open, and closes the
// connection without answering after reading the second. A request to
// ?fail=1 is answered 503 the first time its key is answered.
type droppingServer struct {
	url string
	ln  net.Listener
	wg  sync.WaitGroup

	mu       sync.Mutex
	conns    []net.Conn
	arrivals map[string]int // requests read, by Idempotency-Key
	answered map[string]int
	bodies   []string
}

func newDroppingServer(t *testing.T) *droppingServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &droppingServer{url: "http://" + ln.Addr().String() + "/payments", ln: ln,
		arrivals: map[string]int{}, answered: map[string]int{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, conn)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *droppingServer) serve(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for n := 1; n <= 2; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		key := req.Header.Get("Idempotency-Key")
		s.mu.Lock()
		s.arrivals[key]++
		s.bodies = append(s.bodies, string(body))
		s.mu.Unlock()
		if n == 2 {
			return // read whole, so the close is a clean FIN: no answer at all
		}
		s.mu.Lock()
		s.answered[key]++
		fail := req.URL.Query().Get("fail") == "1" && s.answered[key] == 1
		s.mu.Unlock()
		answer := "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
		if fail {
			answer = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\n503"
		}
		if _, err := io.WriteString(conn, answer); err != nil {
			return
		}
	}
}

func (s *droppingServer) seen() (map[string]int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.arrivals), append([]string(nil), s.bodies...)
}

func TestResolveDuplicates(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	payment := `{"reference":"ord-7","amount":5000,"currency":"NGN","customer":{"email":"a@b.c"}}`
	transfer := `{"reference":"trf-7","amount":100,"currency":"NGN","destination":{"account":"1"}}`
	plain := spotflowhttp.NewTransport(nil)
	resolving := spotflowhttp.NewTransport(nil, spotflowhttp.WithResolveDuplicates())

	for _, c := range []struct{ path, body, id string }{{"/payments", payment, `"reference":"ord-7"`}, {"/transfers", transfer, `"reference":"trf-7"`}} {
		t.Run(c.path, func(t *testing.T) { resolveDuplicateCreate(t, sim, plain, resolving, c.path, c.body, c.id) })
	}
	if sim.Charges("ord-7") != 1 || sim.Charges("trf-7") != 1 {
		t.Errorf("charges: %d, %d", sim.Charges("ord-7"), sim.Charges("trf-7"))
	}

	t.Run("fetch fails", func(t *testing.T) { resolveFetchFails(t, sim, payment) })
	t.Run("custom resolver", func(t *testing.T) { resolveWithCustomResolver(t, sim, payment) })
	t.Run("bad bodies stay unresolved", func(t *testing.T) { resolveBadBodies(t, resolving) })
}

// resolveDuplicateCreate creates body at path once, then sends it again:
// without resolution the duplicate is a 400 to treat as success; with it,
// the existing resource (the one whose JSON has id), as a replay with the
// call's key.
func resolveDuplicateCreate(t *testing.T, sim *spotflowtest.Server, plain, resolving http.RoundTripper, path, body, id string) {
	first := postSimulator(t, sim, plain, path, body)
	if first.StatusCode != 201 {
		t.Fatalf("first create: %d", first.StatusCode)
	}
	// Without resolution: treat as success, annotated.
	dup := postSimulator(t, sim, plain, path, body)
	if e := spotflowhttp.ErrorOf(dup); dup.StatusCode != 400 || e.Category != spotflowhttp.CategoryTreatAsSuccess || spotflowhttp.ReplayOf(dup) {
		t.Fatalf("duplicate without resolution: %d %v", dup.StatusCode, e)
	}
	// With it: the existing resource.
	res := postSimulator(t, sim, resolving, path, body)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || spotflowhttp.ErrorOf(res) != nil || !spotflowhttp.ReplayOf(res) || !strings.Contains(string(b), id) {
		t.Fatalf("resolved: %d %v replay=%v %s", res.StatusCode, spotflowhttp.ErrorOf(res), spotflowhttp.ReplayOf(res), b)
	}
	if spotflowhttp.IdempotencyKeyOf(res) == "" {
		t.Error("resolved response lost the call's key")
	}
}

// A resolver whose fetch finds nothing leaves the duplicate's 400 as it
// came, to treat as success: not a replay.
func resolveFetchFails(t *testing.T, sim *spotflowtest.Server, payment string) {
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithResolver(func(r *http.Request) (*http.Request, error) {
		return http.NewRequest("GET", sim.BaseURL()+"/payments/verify?reference=nope", nil)
	}))
	res := postSimulator(t, sim, tr, "/payments", payment)
	b, _ := io.ReadAll(res.Body)
	e := spotflowhttp.ErrorOf(res)
	if res.StatusCode != 400 || e == nil || e.Category != spotflowhttp.CategoryTreatAsSuccess || spotflowhttp.ReplayOf(res) ||
		!strings.Contains(string(b), "duplicate_reference") {
		t.Fatalf("got %d %v %s", res.StatusCode, e, b)
	}
}

// WithResolver is given the duplicate request and its answer is the fetch.
func resolveWithCustomResolver(t *testing.T, sim *spotflowtest.Server, payment string) {
	var asked string
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithResolver(func(r *http.Request) (*http.Request, error) {
		asked = r.URL.Path
		return http.NewRequest("GET", sim.BaseURL()+"/payments/verify?reference=ord-7", nil)
	}))
	res := postSimulator(t, sim, tr, "/payments", payment)
	if res.StatusCode != 200 || !spotflowhttp.ReplayOf(res) || asked != "/api/v1/payments" {
		t.Fatalf("got %d replay=%v asked %q", res.StatusCode, spotflowhttp.ReplayOf(res), asked)
	}
}

// A body with no reference to look up (not JSON, not an object, no
// reference field) leaves the duplicate unresolved, and fetches nothing.
func resolveBadBodies(t *testing.T, resolving http.RoundTripper) {
	srv := newScript(t, reply(400, `{"error":"Bad Request","message":"duplicate_reference","status":400}`))
	for _, body := range []string{`not json`, `[1]`, `{"amount":1}`} {
		res := post2(t, resolving, srv.srv.URL+"/api/v1/payments", body)
		if e := spotflowhttp.ErrorOf(res); res.StatusCode != 400 || e.Category != spotflowhttp.CategoryTreatAsSuccess {
			t.Errorf("%s: %d %v", body, res.StatusCode, e)
		}
	}
	if srv.hits.Load() != 3 {
		t.Errorf("hits %d: a fetch was attempted without a reference", srv.hits.Load())
	}
}

// postSimulator posts body to path on sim with sim's key, through tr, and
// closes the response's body when the test ends.
func postSimulator(t *testing.T, sim *spotflowtest.Server, tr http.RoundTripper, path, body string) *http.Response {
	req, _ := http.NewRequest("POST", sim.BaseURL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func post2(t *testing.T, tr http.RoundTripper, url, body string) *http.Response {
	resp, err := (&http.Client{Transport: tr}).Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// A call that ends in a 503 keeps its key and is uncertain, so the caller
// can resolve it later with the same key.
func TestUncertainFinalResponse(t *testing.T) {
	s := newScript(t, unavailable)
	resp := post2(t, spotflowhttp.NewTransport(nil, spotflowhttp.WithClock(newFakeClock())), s.srv.URL, `{"amount":1}`)
	e := spotflowhttp.ErrorOf(resp)
	if !e.Uncertain || e.IdempotencyKey == "" || e.Attempts != 4 || e.IdempotencyKey != s.seenKeys()[3] {
		t.Fatalf("got %#v", e)
	}
}

// Reference injection on any body: either the body is sent untouched, or it
// is the same JSON object plus the reference, and it parses.
func FuzzReferenceInjection(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, ` {"a":"x\"}","b":[1,{"c":"]"}]} `, `{"reference":"r"}`, `{"refer\u0065nce":"r"}`,
		`[1]`, `"s"`, `{"a":}`, `{"a":1,}`, `{"\\":{"{":"}"}}`, `{"a":1e5,"b":true,"c":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rec := &recorder{}
		req, _ := http.NewRequest("POST", "https://api.spotflow.co/api/v1/payments", strings.NewReader(body))
		resp, err := spotflowhttp.NewTransport(rec, spotflowhttp.WithReference("reference")).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		sent := rec.bodies[0]
		if sent == body {
			return
		}
		var before, after map[string]any
		if err := json.Unmarshal([]byte(body), &before); err != nil {
			t.Fatalf("changed a body that is not a JSON object: %q -> %q", body, sent)
		}
		if err := json.Unmarshal([]byte(sent), &after); err != nil {
			t.Fatalf("sent invalid JSON %q for %q: %v", sent, body, err)
		}
		if _, had := before["reference"]; had {
			t.Fatalf("changed a body that had a reference: %q -> %q", body, sent)
		}
		if after["reference"] != spotflowhttp.IdempotencyKeyOf(resp) || len(after) != len(before)+1 {
			t.Fatalf("%q -> %q", body, sent)
		}
	})
}

// With duplicate "reference" members, parsers disagree on which one counts,
// so the body has no reference for the client: a duplicate is not resolved
// to another payment.
func TestResolveDuplicatesAmbiguousReference(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	post := func(tr http.RoundTripper, body string) *http.Response {
		req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	plain := spotflowhttp.NewTransport(nil)
	a := post(plain, `{"reference":"A","amount":111,"currency":"NGN","customer":{"email":"a@b.c"}}`)
	a.Body.Close()
	b := post(plain, `{"reference":"B","amount":222,"currency":"NGN","customer":{"email":"a@b.c"}}`)
	b.Body.Close()
	resolving := spotflowhttp.NewTransport(nil, spotflowhttp.WithResolveDuplicates())
	r := post(resolving, `{"reference":"A","amount":222,"currency":"NGN","customer":{"email":"a@b.c"},"reference":"B"}`)
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	// The server took the last "reference", B, which exists: the duplicate
	// comes back unresolved rather than resolved to payment A.
	if e := spotflowhttp.ErrorOf(r); r.StatusCode != 400 || spotflowhttp.ReplayOf(r) || e == nil || e.Code != "duplicate_reference" ||
		strings.Contains(string(body), `"reference":"A"`) {
		t.Fatalf("status %d, replay %v, ErrorOf %v, body %s; want the duplicate_reference 400, not resolved", r.StatusCode, spotflowhttp.ReplayOf(r), e, body)
	}
	if n := len(sim.Payments()); n != 2 {
		t.Errorf("%d payments, want 2", n)
	}
}

// A server decoding with Go's encoding/json matches names
// case-insensitively, so a caller's "Reference" is a reference: WithReference
// does not add another.
func TestReferenceNameCaseInsensitive(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	tr := spotflowhttp.NewTransport(nil, spotflowhttp.WithReference("reference"))
	req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments",
		strings.NewReader(`{"Reference":"ord-9","amount":100,"currency":"NGN","customer":{"email":"a@b.c"}}`))
	req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ps := sim.Payments()
	if len(ps) != 1 || ps[0].Reference != "ord-9" {
		t.Fatalf("payment stored with reference %q, caller sent Reference ord-9", ps[0].Reference)
	}
}

// With a custom key header, a caller's Idempotency-Key is copied into the
// configured header, which the server reads, before the POST is retried.
func TestCallerKeyCopiedToCustomHeader(t *testing.T) {
	var mu sync.Mutex
	var got []string
	n := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		mu.Lock()
		n++
		got = append(got, r.Header.Get("X-Spotflow-Key"))
		st := 200
		if n == 1 {
			st = 503
		}
		mu.Unlock()
		return &http.Response{StatusCode: st, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithIdempotencyHeader("X-Spotflow-Key"), spotflowhttp.WithClock(newFakeClock()))
	req, _ := http.NewRequest("POST", "https://api.spotflow.co/api/v1/payments", strings.NewReader(`{"amount":1}`))
	req.Header.Set("Idempotency-Key", "order-1")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n != 2 || len(got) != 2 || got[0] != "order-1" || got[1] != "order-1" || spotflowhttp.IdempotencyKeyOf(resp) != "order-1" || resp.StatusCode != 200 {
		t.Fatalf("status %d after %d attempts, X-Spotflow-Key sent %q, key of the call %q; want 200 after 2 attempts, both with order-1",
			resp.StatusCode, n, got, spotflowhttp.IdempotencyKeyOf(resp))
	}
}

// A GetBody that returns (nil, nil) is a body source that cannot be read
// again: the request goes out once as the caller made it (no reference
// injected), and a failed attempt is not retried, since there is no body to
// send again.
func TestGetBodyNilNil(t *testing.T) {
	for _, tt := range []struct {
		name     string
		statuses []int
	}{
		{"success", []int{200}},
		{"failure that would be retried", []int{503, 200}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var bodies []string
			statuses := tt.statuses
			base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				var b []byte
				if r.Body != nil {
					b, _ = io.ReadAll(r.Body)
					r.Body.Close()
				}
				bodies = append(bodies, string(b))
				st := statuses[0]
				statuses = statuses[1:]
				return &http.Response{StatusCode: st, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			})
			tr := spotflowhttp.NewTransport(base, spotflowhttp.WithReference("reference"), spotflowhttp.WithClock(newFakeClock()))
			body := newReadCloseCounter(strings.NewReader(`{"amount":1}`))
			req, _ := http.NewRequest("POST", "https://api.spotflow.co/x", body)
			req.ContentLength = int64(len(`{"amount":1}`))
			req.GetBody = func() (io.ReadCloser, error) { return nil, nil }
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// WithReference reads the caller's body once and sends (and
			// resends) its own copy with the reference: the broken GetBody
			// is never called.
			want := `{"amount":1,"reference":"` + spotflowhttp.IdempotencyKeyOf(resp) + `"}`
			if resp.StatusCode != 200 || len(bodies) != len(tt.statuses) {
				t.Fatalf("status %d after sending %q; want 200 after %d attempts", resp.StatusCode, bodies, len(tt.statuses))
			}
			for _, b := range bodies {
				if b != want {
					t.Fatalf("sent %q, want %q", b, want)
				}
			}
			if body.closes.Load() != 1 {
				t.Errorf("caller's body closed %d times, want 1", body.closes.Load())
			}
		})
	}
}

// A duplicate on the redirect checkout, POST …/payments/initialize, is
// resolved through GET …/payments/verify as one on …/payments is.
func TestResolveDuplicatesCheckout(t *testing.T) {
	sim := spotflowtest.NewServer()
	defer sim.Close()
	const body = `{"reference":"chk-7","amount":5000,"currency":"NGN","customer":{"email":"a@b.c"}}`
	post := func(tr http.RoundTripper) (*http.Response, map[string]any) {
		req, _ := http.NewRequest("POST", sim.BaseURL()+"/payments/initialize", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+sim.SecretKey())
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var obj map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&obj)
		return resp, obj
	}
	first, created := post(spotflowhttp.NewTransport(nil))
	if first.StatusCode != 200 || created["paymentCode"] == nil {
		t.Fatalf("initialize: %d %v", first.StatusCode, created)
	}
	dup, _ := post(spotflowhttp.NewTransport(nil))
	if e := spotflowhttp.ErrorOf(dup); dup.StatusCode != 400 || e == nil || e.Category != spotflowhttp.CategoryTreatAsSuccess {
		t.Fatalf("duplicate without resolution: %d %v", dup.StatusCode, e)
	}
	res, got := post(spotflowhttp.NewTransport(nil, spotflowhttp.WithResolveDuplicates()))
	if res.StatusCode != 200 || spotflowhttp.ErrorOf(res) != nil || !spotflowhttp.ReplayOf(res) ||
		got["reference"] != "chk-7" || got["paymentCode"] != created["paymentCode"] || got["id"] != created["id"] {
		t.Fatalf("resolved: %d %v replay=%v %v", res.StatusCode, spotflowhttp.ErrorOf(res), spotflowhttp.ReplayOf(res), got)
	}
	if spotflowhttp.IdempotencyKeyOf(res) == "" {
		t.Error("resolved response lost the call's key")
	}
	if n := sim.Charges("chk-7"); n != 1 {
		t.Errorf("Charges = %d, want 1", n)
	}
}

// failingBody is a request or response body whose every read fails.
type failingBody struct{}

func (failingBody) Read([]byte) (int, error) { return 0, errors.New("disk gone") }

func (failingBody) Close() error { return nil }

// WithReference reads the body before anything is sent; if that read
// fails, nothing is sent: the call fails at once, certain, with the read
// error, and leaves no journal entry.
func TestReferenceBodyReadErrorSendsNothing(t *testing.T) {
	j := spotflowhttp.NewMemoryJournal()
	sent := 0
	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		sent++
		_, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: 201, Body: http.NoBody, Request: r}, nil
	})
	tr := spotflowhttp.NewTransport(base, spotflowhttp.WithJournal(j), spotflowhttp.WithReference("reference"),
		spotflowhttp.WithClock(newFakeClock()))
	req, _ := http.NewRequest(http.MethodPost, "https://api.spotflow.co/payments", failingBody{})
	req.GetBody = func() (io.ReadCloser, error) { return failingBody{}, nil }
	req.ContentLength = 10
	_, err := tr.RoundTrip(req)
	var e *spotflowhttp.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an *Error", err)
	}
	if sent != 0 || e.Uncertain || e.Attempts != 0 || !strings.Contains(err.Error(), "disk gone") {
		t.Errorf("sent %d times, err %v; want nothing sent, 0 attempts, not uncertain, the read error", sent, err)
	}
	if p, _ := j.Pending(context.Background()); len(p) != 0 {
		t.Errorf("%d journal entries pending, want 0", len(p))
	}
}
