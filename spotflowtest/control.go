package spotflowtest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ControlPrefix is the path, outside the API, under which a [Server] answers
// a test's questions and orders over HTTP, so that a test written in any
// language can do what a Go test does with the inspection methods:
//
//	GET  /_mock/ledger                        200 the Ledger, in JSON (see [Server.Ledger])
//	POST /_mock/checkouts/{reference}?outcome=successful|failed
//	                                          finish a pending checkout (see [Server.CompleteCheckout]):
//	                                          200 the payment as verify shows it; 404 not_pending;
//	                                          400 missing_parameter for another outcome
//	POST /_mock/outage?duration=D             start an outage of D, such as 5s (see [Server.StartOutage]): 204
//	POST /_mock/webhooks/wait?timeout=D       wait, up to D (default 10s, at most 5m), until every
//	                                          webhook so far is delivered or has used up its tries
//	                                          (see [Server.WaitWebhooks]): 204; 504 when D passes first;
//	                                          503 when the server is shutting down
//
// These requests need no key, are not counted in [Stats], are never
// faulted, delayed or rate limited, and leave the seeded decisions alone, so
// reading the ledger does not change the run. Any other path under the
// prefix is answered 404 not_found, and a known path with another method 405.
// Bodies of errors are {"code":...,"message":...}.
const ControlPrefix = "/_mock"

// Bounds of POST /_mock/webhooks/wait.
const (
	defaultControlWait = 10 * time.Second
	maxControlWait     = 5 * time.Minute
)

func isControlPath(p string) bool {
	return p == ControlPrefix || strings.HasPrefix(p, ControlPrefix+"/")
}

// serveControl answers the requests under ControlPrefix.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), ControlPrefix)
	switch {
	case rest == "/ledger":
		if onlyMethod(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, mustMarshal(s.Ledger()))
		}
	case strings.HasPrefix(rest, "/checkouts/"):
		if onlyMethod(w, r, http.MethodPost) {
			s.controlCheckout(w, r, strings.TrimPrefix(rest, "/checkouts/"))
		}
	case rest == "/outage":
		if onlyMethod(w, r, http.MethodPost) {
			s.controlOutage(w, r)
		}
	case rest == "/webhooks/wait":
		if onlyMethod(w, r, http.MethodPost) {
			s.controlWait(w, r)
		}
	default:
		writeJSON(w, http.StatusNotFound, coded(codeNotFound, "Not found"))
	}
}

// onlyMethod answers 405 and reports false unless r has method m.
func onlyMethod(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m {
		return true
	}
	w.Header().Set("Allow", m)
	writeJSON(w, http.StatusMethodNotAllowed, coded(codeMethodNotAllowed, "Method not allowed"))
	return false
}

func (s *Server) controlCheckout(w http.ResponseWriter, r *http.Request, seg string) {
	ref, err := url.PathUnescape(seg)
	if err != nil || ref == "" || strings.Contains(seg, "/") {
		writeJSON(w, http.StatusNotFound, coded(codeNotFound, "Not found"))
		return
	}
	var successful bool
	switch r.URL.Query().Get("outcome") {
	case statusSuccessful:
		successful = true
	case statusFailed:
	default:
		writeJSON(w, http.StatusBadRequest, coded(codeMissingParameter, `outcome must be "successful" or "failed"`))
		return
	}
	if err := s.CompleteCheckout(ref, successful); err != nil {
		writeJSON(w, http.StatusNotFound, coded("not_pending", "No pending checkout with that reference"))
		return
	}
	p, _ := s.Payment(ref)
	writeJSON(w, http.StatusOK, paymentJSON(&p))
}

func (s *Server) controlOutage(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("duration"))
	if err != nil || d <= 0 {
		writeJSON(w, http.StatusBadRequest, coded(codeMissingParameter, "duration must be a positive Go duration, such as 5s"))
		return
	}
	s.StartOutage(d)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) controlWait(w http.ResponseWriter, r *http.Request) {
	timeout := defaultControlWait
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxControlWait {
			writeJSON(w, http.StatusBadRequest, coded(codeMissingParameter, "timeout must be a Go duration in (0, 5m], such as 10s"))
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	go func() { // returns when the handler does, at the latest
		select {
		case <-s.draining:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := s.WaitWebhooks(ctx)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, context.DeadlineExceeded):
		writeJSON(w, http.StatusGatewayTimeout, coded("timeout", "Webhooks still in flight"))
	default: // the server is shutting down, or the client went away
		writeJSON(w, http.StatusServiceUnavailable, coded("shutting_down", "The server is shutting down"))
	}
}
