package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

func runResolve(e *env, args []string) error {
	fs := newFlagSet(e, "resolve", "-file PATH | -redis URL -name NAME | -admin URL -outcome created|not_created [-note TEXT] [-audit FILE] KEY",
		`Settles one pending entry with a person's decision: the payment or transfer
was created, or was not (safe to create anew). It asks Spotflow nothing. The
decision is first appended to an audit file as one JSON line (time, user,
host, journal, key, reference, outcome, note), then the entry is removed,
and the settlement is printed. An entry a live call or a reconciler holds is
refused (exit 1): try again once its claim ends. Through -admin, the service
writes the audit record, if it allows resolving at all.`)
	s := addStoreFlags(fs, true)
	outcome := fs.String("outcome", "", "the decision: created or not_created (required)")
	note := fs.String("note", "", "why: what was checked, with whom (recorded in the audit file)")
	audit := fs.String("audit", "", "the audit `file` to append the decision to (default: PATH.audit.jsonl beside a\njournal file; spotflow-journal-NAME.audit.jsonl in the current directory for Redis)")
	asJSON := fs.Bool("json", false, "print the audit record as one JSON object instead of a line of text")
	key, err := parseKey(fs, args, s)
	if err != nil {
		return err
	}
	o, err := journaladmin.ParseOutcome(*outcome)
	if err != nil {
		return usageError(fs, "-outcome: %v", err)
	}
	if s.admin != "" && *audit != "" {
		return usageError(fs, "-audit: through -admin, the service writes the audit record")
	}
	ctx := context.Background()
	j, err := opener{writable: true}.open(ctx, e, s)
	if err != nil {
		return err
	}
	defer j.close()
	who, host := operator()
	var rec journaladmin.AuditRecord
	if j.admin != nil {
		rec, err = j.admin.resolve(ctx, key, *outcome, *note, who, host)
	} else {
		rec, err = j.resolve(ctx, e, key, o, *note, who, host, *audit)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONLines(e.stdout, []journaladmin.AuditRecord{rec})
	}
	printRecord(e.stdout, rec)
	return nil
}

// resolve settles key with the decision and appends its audit record to
// the file audit (else the journal's default), before the entry goes.
func (j *journal) resolve(ctx context.Context, e *env, key string, o spotflowhttp.Outcome, note, who, host, audit string) (journaladmin.AuditRecord, error) {
	if audit == "" {
		audit = j.audit
	}
	var rec journaladmin.AuditRecord
	// The store itself: a decision needs no body, so no key either.
	_, err := spotflowhttp.Resolve(ctx, j.plain, key, o, note, func(s spotflowhttp.Settlement) error {
		rec = journaladmin.RecordOf(s, e.now())
		rec.User, rec.Host, rec.Journal = who, host, j.name
		if err := journaladmin.AppendAudit(audit, rec); err != nil {
			return problem(fmt.Errorf("%w; the entry stays pending", err))
		}
		fmt.Fprintf(e.stderr, "audit record appended to %s\n", audit)
		return nil
	})
	var ce *spotflowhttp.ClaimedError
	switch {
	case err == nil:
		return rec, nil
	case errors.As(err, &ce):
		return rec, problem(fmt.Errorf("entry %q is held by %s until %s: a call or a reconciler is working on it; try again after that",
			key, ce.Owner, ce.Until.UTC().Format(time.RFC3339)))
	case errors.Is(err, spotflowhttp.ErrNotPending):
		return rec, badInput(fmt.Errorf("%s: no pending entry with key %q", j.name, key))
	}
	return rec, err
}

// operator is who runs the command, and on which machine.
func operator() (who, host string) {
	if u, err := user.Current(); err == nil && u.Username != "" {
		who = u.Username
	} else if who = os.Getenv("USER"); who == "" {
		who = "unknown"
	}
	host, _ = os.Hostname()
	return who, host
}

// printRecord prints a settlement as one line of text.
func printRecord(w io.Writer, r journaladmin.AuditRecord) {
	fmt.Fprintf(w, "%s  %s  %s by %s", r.Key, dash(r.Reference), r.Outcome, r.By)
	if r.Status != "" {
		fmt.Fprintf(w, "  status %s", r.Status)
	}
	if r.User != "" {
		fmt.Fprintf(w, "  (%s)", r.User)
	}
	if r.Note != "" {
		fmt.Fprintf(w, "  note: %s", oneLine(r.Note))
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s", oneLine(r.Error))
	}
	fmt.Fprintln(w)
}
