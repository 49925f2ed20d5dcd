package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

// maxAdminAnswer bounds what the command reads from a journaladmin
// handler.
const maxAdminAnswer = 256 << 20

// adminClient talks to the journaladmin handler a running service mounts.
type adminClient struct {
	base  *url.URL
	token string
	hc    *http.Client
}

func newAdminClient(base *url.URL, token string) *adminClient {
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &adminClient{base: base, token: token, hc: &http.Client{Transport: t, Timeout: 30 * time.Second}}
}

func (c *adminClient) close() { c.hc.CloseIdleConnections() }

// do sends a request to path, escaped and relative to the base URL, and
// returns the answer, or an error saying what its status means.
func (c *adminClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	b := *c.base
	b.RawQuery, b.Fragment = "", ""
	target := strings.TrimSuffix(b.String(), "/") + path // path is escaped already
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, badInput(fmt.Errorf("-admin: %w", err))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, problem(fmt.Errorf("admin %s: %w", c.base.Redacted(), errors.Unwrap(err)))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, c.statusError(resp)
}

// statusError is what an error answer of the handler means for the
// operator.
func (c *adminClient) statusError(resp *http.Response) error {
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	if e.Error == "" {
		e.Error = resp.Status
	}
	err := fmt.Errorf("admin %s: %s", c.base.Redacted(), e.Error)
	switch resp.StatusCode {
	case http.StatusNotFound:
		if !strings.Contains(e.Error, "pending entry") && !strings.Contains(e.Error, "key") {
			return badInput(fmt.Errorf("admin %s: %s: is a journaladmin handler mounted there?", c.base.Redacted(), resp.Status))
		}
		return badInput(err)
	case http.StatusBadRequest:
		return badInput(err)
	case http.StatusUnauthorized:
		return problem(fmt.Errorf("%w (set SPOTFLOW_ADMIN_TOKEN to the handler's token)", err))
	}
	return problem(err)
}

// list is GET /entries: the entries, and the handler's warning, if any.
func (c *adminClient) list(ctx context.Context) ([]journaladmin.EntryView, string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/entries", nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	var out []journaladmin.EntryView
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxAdminAnswer))
	for {
		var v journaladmin.EntryView
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			return nil, "", problem(fmt.Errorf("admin %s: reading the entries: %w", c.base.Redacted(), err))
		}
		out = append(out, v)
	}
	return out, resp.Header.Get("Spotflow-Journal-Warning"), nil
}

// show is GET /entries/{key}.
func (c *adminClient) show(ctx context.Context, key string, body bool) (journaladmin.EntryView, error) {
	p := "/entries/" + url.PathEscape(key)
	if body {
		p += "?body=1"
	}
	var v journaladmin.EntryView
	resp, err := c.do(ctx, http.MethodGet, p, nil)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAdminAnswer)).Decode(&v); err != nil {
		return v, problem(fmt.Errorf("admin %s: reading the entry: %w", c.base.Redacted(), err))
	}
	return v, nil
}

// resolve is POST /entries/{key}/resolve; the service writes the audit
// record and returns it.
func (c *adminClient) resolve(ctx context.Context, key, outcome, note, user, host string) (journaladmin.AuditRecord, error) {
	var rec journaladmin.AuditRecord
	resp, err := c.do(ctx, http.MethodPost, "/entries/"+url.PathEscape(key)+"/resolve",
		map[string]string{"outcome": outcome, "note": note, "user": user, "host": host})
	if err != nil {
		return rec, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rec); err != nil {
		return rec, problem(fmt.Errorf("admin %s: reading the answer: %w", c.base.Redacted(), err))
	}
	return rec, nil
}
