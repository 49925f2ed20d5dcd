package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

// progressEvery is how often reconcile reports progress on stderr, in
// settlements, when it has more than that many entries to look at.
const progressEvery = 100

func runReconcile(e *env, args []string) error {
	fs := newFlagSet(e, "reconcile", "-file PATH | -redis URL -name NAME [-base-url URL] [-json] [-audit FILE]",
		`Runs one pass of a spotflowhttp Reconciler over the pending entries: for each
free entry, the verify endpoint by reference, else the same request sent
again with the same key (within Spotflow's 24-hour idempotency window);
entries held by a live call or another reconciler are left alone. Each
settlement is printed as it happens and appended to the audit file, then a
summary. An entry that needs a human (its outcome unknown after Spotflow's
idempotency window, or its key bound to another request) is reported and
left pending, free, for "spotflow-journal resolve"; the exit status is then
1, as when the journal could not be read.

The credential comes from the environment: SPOTFLOW_SECRET_KEY for entries
without an account label, SPOTFLOW_SECRET_KEY_<LABEL> for entries of account
LABEL (upper-cased, anything but A-Z and 0-9 as _: "shop-7" reads
SPOTFLOW_SECRET_KEY_SHOP_7). An entry whose credential is not set stays
pending. Sealed entries need their key to be sent again; without it they are
verified by reference only.`)
	s := addStoreFlags(fs, false)
	baseURL := fs.String("base-url", "", "send to this API base instead of the one each entry was sent to, such as a spotflow-mock's\nhttp://127.0.0.1:PORT/api/v1 (the entry's path after /api/v1 is kept)")
	asJSON := fs.Bool("json", false, "print each settlement as one JSON object (the audit record's fields) per line")
	audit := fs.String("audit", "", "the audit `file` settlements are appended to (default: as for resolve)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if err := s.check(); err != nil {
		return usageError(fs, "%v", err)
	}
	base, err := parseBaseURL(*baseURL)
	if err != nil {
		return usageError(fs, "-base-url: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	j, err := opener{writable: true}.open(ctx, e, s)
	if err != nil {
		return err
	}
	defer j.close()
	if *audit == "" {
		*audit = j.audit
	}
	return (&reconcilePass{e: e, j: j, base: base, json: *asJSON, audit: *audit}).run(ctx)
}

// reconcilePass is one run of reconcile.
type reconcilePass struct {
	e     *env
	j     *journal
	base  *url.URL
	json  bool
	audit string

	hold *holdForPerson

	mu      sync.Mutex
	total   int            // entries pending at the start
	counts  map[string]int // settlements by outcome
	auditOK bool
}

func (p *reconcilePass) run(ctx context.Context) error {
	journal := p.j.plain
	if p.j.sealed != nil {
		journal = p.j.sealed
	}
	entries, err := journal.Pending(ctx)
	if err != nil && len(entries) == 0 {
		return problem(fmt.Errorf("%s: %w", p.j.name, err))
	}
	if err := p.checkCredentials(entries); err != nil {
		return err
	}
	p.total, p.counts, p.auditOK = len(entries), map[string]int{}, true
	p.hold = &holdForPerson{Journal: journal, keep: map[string]bool{}}
	rec, err := spotflowhttp.NewReconciler(p.hold, &rebase{base: p.base, rt: http.DefaultTransport}, p.authorize, p.settled,
		spotflowhttp.WithVerifyAfter(0),
		spotflowhttp.WithLogger(slog.New(slog.NewTextHandler(p.e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		return err
	}
	left, rerr := rec.ReconcileOnce(ctx)
	return p.summary(left, rerr)
}

// checkCredentials warns of entries whose credential is not set, and fails
// if none is set at all.
func (p *reconcilePass) checkCredentials(entries []spotflowhttp.Entry) error {
	missing := map[string]int{}
	sealed := 0
	for _, en := range entries {
		if p.credential(en.Account) == "" {
			missing[credentialVar(en.Account)]++
		}
		if len(en.Sealed) > 0 {
			sealed++
		}
	}
	if len(entries) > 0 && len(missing) > 0 {
		n := 0
		for v, c := range missing {
			fmt.Fprintf(p.e.stderr, "spotflow-journal: %s is not set: %s left pending\n", v, entriesCount(c))
			n += c
		}
		if n == len(entries) {
			return badInput(errors.New("no credential set for any pending entry (SPOTFLOW_SECRET_KEY, or SPOTFLOW_SECRET_KEY_<LABEL> per account)"))
		}
	}
	if sealed > 0 && p.j.sealed == nil {
		fmt.Fprintf(p.e.stderr, "spotflow-journal: %s sealed: without the key (SPOTFLOW_JOURNAL_KEY) they are verified by reference but never sent again\n", entriesCount(sealed))
	}
	return nil
}

// credentialVar is the environment variable holding account's API key.
func credentialVar(account string) string {
	if account == "" {
		return "SPOTFLOW_SECRET_KEY"
	}
	return "SPOTFLOW_SECRET_KEY_" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, account)
}

// credential is account's API key, "" if not set. An entry of an account
// never falls back to SPOTFLOW_SECRET_KEY: another merchant's key would
// create the payment for the wrong merchant.
func (p *reconcilePass) credential(account string) string {
	return p.e.getenv(credentialVar(account))
}

func (p *reconcilePass) authorize(req *http.Request, en spotflowhttp.Entry) error {
	k := p.credential(en.Account)
	if k == "" {
		return fmt.Errorf("%s is not set", credentialVar(en.Account))
	}
	req.Header.Set("Authorization", "Bearer "+k)
	return nil
}

// settled prints one settlement and appends it to the audit file; it runs
// before the Reconciler removes the entry.
func (p *reconcilePass) settled(s spotflowhttp.Settlement) {
	r := journaladmin.RecordOf(s, p.e.now())
	r.User, r.Host = operator()
	r.Journal = p.j.name
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := journaladmin.AppendAudit(p.audit, r); err != nil && p.auditOK {
		p.auditOK = false
		fmt.Fprintf(p.e.stderr, "spotflow-journal: %v: settlements are printed only\n", err)
	}
	if p.json {
		writeJSONLines(p.e.stdout, []journaladmin.AuditRecord{r})
	} else {
		printRecord(p.e.stdout, r)
	}
	if s.Outcome == spotflowhttp.OutcomeNeedsHuman {
		p.hold.keepPending(s.Entry.Key)
	}
	p.counts[r.Outcome]++
	n := p.counts["created"] + p.counts["not_created"] + p.counts["needs_human"]
	if p.total > progressEvery && n%progressEvery == 0 {
		fmt.Fprintf(p.e.stderr, "reconcile: %d of %d entries settled\n", n, p.total)
	}
}

// summary prints what the pass did and returns its verdict.
func (p *reconcilePass) summary(left int, err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	n := c["created"] + c["not_created"]
	w := p.e.stdout
	if p.json {
		w = p.e.stderr
	}
	fmt.Fprintf(w, "settled %d: created %d, not_created %d; needs_human %d, left pending for resolve; pending %d in all\n",
		n, c["created"], c["not_created"], c["needs_human"], left+c["needs_human"])
	if n+c["needs_human"] > 0 {
		fmt.Fprintf(p.e.stderr, "settlements appended to %s\n", p.audit)
	}
	switch {
	case err != nil:
		return problem(fmt.Errorf("%s: %w", p.j.name, err))
	case c["needs_human"] > 0:
		return problem(fmt.Errorf("%s needing a human: decide each with spotflow-journal resolve (the needs_human lines say why)", entriesCount(c["needs_human"])))
	}
	return nil
}

// holdForPerson is the journal the command's Reconciler works on. The
// Reconciler removes an entry once it has reported it, needs_human
// included, which suits a service that acts on the report; here a person
// is at hand, so an entry that needs one is released instead and stays
// pending for resolve, its report in the audit file.
type holdForPerson struct {
	spotflowhttp.Journal

	mu   sync.Mutex
	keep map[string]bool // keys reported as needing a human, not yet settled
}

// keepPending makes the next Settle of key release it instead.
func (h *holdForPerson) keepPending(key string) {
	h.mu.Lock()
	h.keep[key] = true
	h.mu.Unlock()
}

// Settle removes key's entry, or releases it if it needs a human.
func (h *holdForPerson) Settle(ctx context.Context, key, owner string) (bool, error) {
	h.mu.Lock()
	keep := h.keep[key]
	delete(h.keep, key)
	h.mu.Unlock()
	if !keep {
		return h.Journal.Settle(ctx, key, owner)
	}
	now := time.Now()
	_, err := h.Journal.Claim(ctx, key, owner, now, now)
	return false, err
}

// parseBaseURL checks -base-url; nil if not given.
func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http:// or https:// URL", raw)
	}
	return u, nil
}

// rebase sends each request to base instead of its own server: the path
// after /api/v1 (or the whole path, if it has none) goes after base's.
type rebase struct {
	base *url.URL // nil: no change
	rt   http.RoundTripper
}

func (r *rebase) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.base == nil {
		return r.rt.RoundTrip(req)
	}
	u := *req.URL
	rest := u.Path
	if i := strings.Index(rest, "/api/v1"); i >= 0 {
		rest = rest[i+len("/api/v1"):]
	}
	u.Scheme, u.Host, u.User = r.base.Scheme, r.base.Host, nil
	u.Path, u.RawPath = strings.TrimSuffix(r.base.Path, "/")+rest, ""
	out := req.Clone(req.Context())
	out.URL, out.Host = &u, ""
	return r.rt.RoundTrip(out)
}

// entriesCount is "1 entry" or "n entries".
func entriesCount(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}
