package journaladmin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp"
)

// maxResolveBody bounds the JSON body of a resolve request.
const maxResolveBody = 64 << 10

// Handler serves a journal's pending entries to an operator:
//
//	GET  /entries                the pending entries, oldest first, one
//	                             JSON [EntryView] per line, never a body
//	GET  /entries/{key}          one entry; with ?body=1 its body too, if
//	                             the handler was made [WithBodies]
//	POST /entries/{key}/resolve  a person's decision, if the handler was
//	                             made with [AllowResolve]: a JSON object
//	                             {"outcome": "created" or "not_created",
//	                             "note": "…", "user": "…", "host": "…"};
//	                             the answer is the [AuditRecord] written
//
// The paths are relative: mount it with [http.StripPrefix], as in
// mux.Handle("/spotflow/journal/", http.StripPrefix("/spotflow/journal", h)).
// Errors are JSON objects {"error": "…"} with the status: 400 a bad
// request, 401 a missing or wrong token, 403 what the handler does not
// allow, 404 no such pending entry, 409 an entry a call or a reconciler
// holds now (with "owner" and "until"), 500 the journal's failure. If the
// journal's Pending returns entries together with an error (a sealed
// journal's entries no key opens), the entries are served and the error is
// in the Spotflow-Journal-Warning header.
//
// Reading takes no claim and changes nothing. A Handler is safe for
// concurrent use by multiple goroutines, as far as its journal is.
type Handler struct {
	j   spotflowhttp.Journal
	cfg config
	mux *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// Option configures a [Handler].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	bodies   bool
	token    string
	resolve  bool
	audit    func(context.Context, AuditRecord) error
	operator func(*http.Request) string
	now      func() time.Time
	err      error
}

// WithBodies lets GET /entries/{key}?body=1 return the entry's body, which
// holds the customer's details as sent. The default is never to.
func WithBodies() Option {
	return optionFunc(func(c *config) { c.bodies = true })
}

// WithToken makes every request carry the header "Authorization: Bearer
// token" (compared in constant time); others get 401. The spotflow-journal
// command sends the value of SPOTFLOW_ADMIN_TOKEN. The default is no
// token: the handler then relies wholly on where it is mounted.
func WithToken(token string) Option {
	return optionFunc(func(c *config) {
		if token == "" {
			c.invalid("WithToken: the token is empty")
		}
		c.token = token
	})
}

// AllowResolve enables POST /entries/{key}/resolve: a person's decision,
// made with [spotflowhttp.Resolve]. audit receives the record of each
// decision before its entry is removed; if it fails, the entry stays
// pending and the client gets 500. Write it somewhere durable, such as a
// file with [AppendAudit]. The default is not to allow resolving.
func AllowResolve(audit func(ctx context.Context, r AuditRecord) error) Option {
	return optionFunc(func(c *config) {
		if audit == nil {
			c.invalid("AllowResolve: the audit function is nil")
		}
		c.resolve, c.audit = true, audit
	})
}

// WithOperator names who makes a decision from the request, as the
// service's authentication knows them; a request for which it returns ""
// is refused with 401. Without it, the audit record's User is the name the
// client sends, with " (unverified)" added.
func WithOperator(f func(r *http.Request) string) Option {
	return optionFunc(func(c *config) {
		if f == nil {
			c.invalid("WithOperator: the function is nil")
		}
		c.operator = f
	})
}

func (c *config) invalid(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("journaladmin: "+format, args...)
	}
}

// NewHandler returns a Handler of j's entries, read-only unless
// [AllowResolve] is given. It returns an error if j is nil or an option's
// value is invalid.
func NewHandler(j spotflowhttp.Journal, opts ...Option) (*Handler, error) {
	if j == nil {
		return nil, errors.New("journaladmin: the journal is nil")
	}
	h := &Handler{j: j, cfg: config{now: time.Now}}
	for _, o := range opts {
		if o != nil {
			o.apply(&h.cfg)
		}
	}
	if h.cfg.err != nil {
		return nil, h.cfg.err
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET /entries", h.list)
	h.mux.HandleFunc("GET /entries/{key}", h.show)
	h.mux.HandleFunc("POST /entries/{key}/resolve", h.resolve)
	return h, nil
}

// ServeHTTP implements [http.Handler].
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.token != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spotflow journal"`)
			writeError(w, http.StatusUnauthorized, "a bearer token is required")
			return
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// pending is the journal's entries, and a warning for the entries it
// returned with an error; an error alone fails the request.
func (h *Handler) pending(w http.ResponseWriter, r *http.Request) ([]spotflowhttp.Entry, bool) {
	entries, err := h.j.Pending(r.Context())
	if err != nil && len(entries) == 0 {
		writeError(w, http.StatusInternalServerError, "reading the journal: "+err.Error())
		return nil, false
	}
	if err != nil {
		w.Header().Set("Spotflow-Journal-Warning", oneLine(err.Error()))
	}
	return entries, true
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	entries, ok := h.pending(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if enc.Encode(ViewOf(e)) != nil {
			return // the client has gone
		}
	}
}

func (h *Handler) show(w http.ResponseWriter, r *http.Request) {
	withBody := r.URL.Query().Get("body") == "1"
	if withBody && !h.cfg.bodies {
		writeError(w, http.StatusForbidden, "this handler does not serve bodies (journaladmin.WithBodies)")
		return
	}
	entries, ok := h.pending(w, r)
	if !ok {
		return
	}
	key := r.PathValue("key")
	for _, e := range entries {
		if e.Key != key {
			continue
		}
		v := ViewOf(e)
		if withBody {
			v.Body = e.Body
		}
		writeJSON(w, http.StatusOK, v)
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no pending entry with key %q", key))
}

// resolveRequest is the body of POST /entries/{key}/resolve.
type resolveRequest struct {
	Outcome string `json:"outcome"`
	Note    string `json:"note"`
	User    string `json:"user"`
	Host    string `json:"host"`
}

func (h *Handler) resolve(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.resolve {
		writeError(w, http.StatusForbidden, "this handler is read-only (journaladmin.AllowResolve)")
		return
	}
	var req resolveRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxResolveBody))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "the body must be a JSON object with outcome and note: "+err.Error())
		return
	}
	outcome, err := ParseOutcome(req.Outcome)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	user, ok := h.operatorOf(r, req.User)
	if !ok {
		writeError(w, http.StatusUnauthorized, "the operator is not known")
		return
	}
	var rec AuditRecord
	_, err = spotflowhttp.Resolve(r.Context(), h.j, r.PathValue("key"), outcome, req.Note,
		func(s spotflowhttp.Settlement) error {
			rec = RecordOf(s, h.cfg.now())
			rec.User, rec.Host, rec.Remote, rec.Journal = user, req.Host, r.RemoteAddr, "admin handler"
			return h.cfg.audit(r.Context(), rec)
		})
	h.answerResolve(w, rec, err)
}

func (h *Handler) answerResolve(w http.ResponseWriter, rec AuditRecord, err error) {
	var ce *spotflowhttp.ClaimedError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, rec)
	case errors.As(err, &ce):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "owner": ce.Owner, "until": ce.Until})
	case errors.Is(err, spotflowhttp.ErrNotPending):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// operatorOf is who makes r's decision: WithOperator's answer, else the
// name the client gave, marked as unverified.
func (h *Handler) operatorOf(r *http.Request, claimed string) (string, bool) {
	if h.cfg.operator != nil {
		u := h.cfg.operator(r)
		return u, u != ""
	}
	if claimed == "" {
		claimed = "unknown"
	}
	return claimed + " (unverified)", true
}

// ParseOutcome returns the outcome a person may decide, from its name:
// created or not_created.
func ParseOutcome(s string) (spotflowhttp.Outcome, error) {
	switch s {
	case "created":
		return spotflowhttp.OutcomeCreated, nil
	case "not_created":
		return spotflowhttp.OutcomeNotCreated, nil
	}
	return 0, fmt.Errorf("outcome %q: want created or not_created", s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// oneLine makes s fit in a header value.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
