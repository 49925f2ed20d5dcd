package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

// newFlagSet returns a subcommand's flag set, whose -h prints synopsis,
// what it does, and every flag with its default.
func newFlagSet(e *env, name, synopsis, doc string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: spotflow-journal %s %s\n\n%s\n\nFlags:\n", name, synopsis, doc)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, and reports bad usage once the usage is printed.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage // the flag package has printed the error and the usage
	}
	return nil
}

// usageError prints msg and fs's usage, and returns errUsage.
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "spotflow-journal %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}

// parseKey parses args as flags followed by one KEY, checks the store
// flags, and returns the key.
func parseKey(fs *flag.FlagSet, args []string, s *storeFlags) (string, error) {
	if err := parse(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", usageError(fs, "want one KEY after the flags, got %d arguments", fs.NArg())
	}
	if err := s.check(); err != nil {
		return "", usageError(fs, "%v", err)
	}
	return fs.Arg(0), nil
}

func runList(e *env, args []string) error {
	fs := newFlagSet(e, "list", "-file PATH | -redis URL -name NAME | -admin URL [-json]",
		`Prints the pending entries, oldest first: key, reference, account, method,
URL, age, and who holds the claim until when ("free" if no one). It never
prints a body, and changes nothing: a journal file is opened read-only and
no claim is taken or freed. While a service holds the file, use -admin.`)
	s := addStoreFlags(fs, true)
	asJSON := fs.Bool("json", false, "print one JSON object per entry and line: key, reference, account, method, url,\ntime (RFC 3339), owner, until, sealed, keyId, bodyMissing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if err := s.check(); err != nil {
		return usageError(fs, "%v", err)
	}
	ctx := context.Background()
	j, err := opener{}.open(ctx, e, s)
	if err != nil {
		return err
	}
	defer j.close()
	views, warning, err := j.views(ctx)
	if err != nil {
		return err
	}
	if warning != "" {
		fmt.Fprintf(e.stderr, "spotflow-journal: warning: %s\n", oneLine(warning))
	}
	if *asJSON {
		return writeJSONLines(e.stdout, views)
	}
	if len(views) == 0 {
		fmt.Fprintf(e.stderr, "no pending entries in %s\n", j.name)
		return nil
	}
	printTable(e.stdout, views, e.now())
	return nil
}

// views returns the journal's pending entries as an operator sees them,
// without bodies, and a warning for entries read with an error.
func (j *journal) views(ctx context.Context) ([]journaladmin.EntryView, string, error) {
	if j.admin != nil {
		return j.admin.list(ctx)
	}
	// The store itself, not through SealJournal: a list needs no key.
	entries, err := j.plain.Pending(ctx)
	if err != nil && len(entries) == 0 {
		return nil, "", problem(fmt.Errorf("%s: %w", j.name, err))
	}
	warning := ""
	if err != nil {
		warning = err.Error()
	}
	views := make([]journaladmin.EntryView, len(entries))
	for i, en := range entries {
		views[i] = journaladmin.ViewOf(en)
	}
	return views, warning, nil
}

func writeJSONLines[T any](w io.Writer, vs []T) error {
	enc := json.NewEncoder(w)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// printTable prints views as an aligned table, their ages counted at now.
func printTable(w io.Writer, views []journaladmin.EntryView, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tREFERENCE\tACCOUNT\tMETHOD\tURL\tAGE\tCLAIM\tNOTE")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Key, dash(v.Reference), dash(v.Account), v.Method, v.URL,
			age(v.Time, now), claim(v, now), notes(v))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age is how long ago t was, to the second, as 3m12s.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Truncate(time.Second).String()
}

// claim is "free", or who holds the entry until when.
func claim(v journaladmin.EntryView, now time.Time) string {
	if v.Free(now) {
		return "free"
	}
	until := v.Until.UTC()
	if until.Sub(now) < 24*time.Hour {
		return fmt.Sprintf("%s until %s", v.Owner, until.Format("15:04:05Z"))
	}
	return fmt.Sprintf("%s until %s", v.Owner, until.Format(time.RFC3339))
}

// notes says what cannot be read of an entry.
func notes(v journaladmin.EntryView) string {
	var n []string
	if v.Sealed {
		n = append(n, "sealed("+v.KeyID+")")
	}
	if v.BodyMissing {
		n = append(n, "no-body")
	}
	return strings.Join(n, ",")
}

func runShow(e *env, args []string) error {
	fs := newFlagSet(e, "show", "-file PATH | -redis URL -name NAME | -admin URL [-body] [-json] KEY",
		`Prints one pending entry: what list shows, and its headers and body only
with -body. The body of a sealed entry needs its key (SPOTFLOW_JOURNAL_KEY or
-key-file). Like list, it changes nothing.`)
	s := addStoreFlags(fs, true)
	withBody := fs.Bool("body", false, "print the request's headers and body as well (it holds the customer's details)")
	asJSON := fs.Bool("json", false, "print the entry as one JSON object (as list -json; with -body, \"body\" in base64)")
	key, err := parseKey(fs, args, s)
	if err != nil {
		return err
	}
	ctx := context.Background()
	j, err := opener{}.open(ctx, e, s)
	if err != nil {
		return err
	}
	defer j.close()
	v, header, err := j.entry(ctx, key, *withBody)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSONLines(e.stdout, []journaladmin.EntryView{v})
	}
	printEntry(e.stdout, v, header, *withBody, e.now())
	return nil
}

// entry returns key's entry, with its body and headers if withBody.
func (j *journal) entry(ctx context.Context, key string, withBody bool) (journaladmin.EntryView, map[string][]string, error) {
	if j.admin != nil {
		v, err := j.admin.show(ctx, key, withBody)
		return v, nil, err
	}
	entries, err := j.plain.Pending(ctx)
	en, found := findEntry(entries, key)
	if !found {
		if err != nil {
			return journaladmin.EntryView{}, nil, problem(fmt.Errorf("%s: %w", j.name, err))
		}
		return journaladmin.EntryView{}, nil, badInput(fmt.Errorf("%s: no pending entry with key %q", j.name, key))
	}
	v := journaladmin.ViewOf(en)
	if !withBody {
		return v, nil, nil
	}
	if v.Sealed {
		if en, err = j.unsealed(ctx, en); err != nil {
			return v, nil, err
		}
	}
	v.Body = en.Body
	return v, en.Header, nil
}

func findEntry(entries []spotflowhttp.Entry, key string) (spotflowhttp.Entry, bool) {
	for _, e := range entries {
		if e.Key == key {
			return e, true
		}
	}
	return spotflowhttp.Entry{}, false
}

// unsealed reads sealed entry en through SealJournal. An entry none of the
// keys given opens is bad input: the error names the entry and the key ids.
func (j *journal) unsealed(ctx context.Context, en spotflowhttp.Entry) (spotflowhttp.Entry, error) {
	id, _ := spotflowhttp.SealKeyIDOf(en)
	if j.sealed == nil {
		return en, badInput(fmt.Errorf("entry %q is sealed with key id %s: give that key in SPOTFLOW_JOURNAL_KEY or -key-file", en.Key, id))
	}
	entries, err := j.sealed.Pending(ctx)
	var ue *spotflowhttp.UnsealError
	if errors.As(err, &ue) {
		for _, f := range ue.Entries {
			if f.Key == en.Key {
				return en, badInput(fmt.Errorf("entry %q is sealed with key id %s, which no key given opens (ids %s): %v",
					en.Key, id, strings.Join(j.keyIDs, ", "), f.Err))
			}
		}
	}
	got, found := findEntry(entries, en.Key)
	switch {
	case !found && err != nil:
		return en, problem(fmt.Errorf("%s: %w", j.name, err))
	case !found:
		return en, badInput(fmt.Errorf("%s: no pending entry with key %q", j.name, en.Key))
	}
	return got, nil
}

// printEntry prints v as "name  value" lines.
func printEntry(w io.Writer, v journaladmin.EntryView, header map[string][]string, withBody bool, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("key", v.Key)
	row("reference", dash(v.Reference))
	row("account", dash(v.Account))
	row("method", v.Method)
	row("url", v.URL)
	row("time", fmt.Sprintf("%s (%s ago)", v.Time.UTC().Format(time.RFC3339), age(v.Time, now)))
	row("claim", claim(v, now))
	if v.Sealed {
		row("sealed", "yes, key id "+v.KeyID)
	}
	switch {
	case v.BodyMissing:
		row("body", "not kept (no GetBody, or over 1 MiB): it cannot be sent again")
	case !withBody:
		row("body", "not shown (-body)")
	}
	for _, k := range slices.Sorted(maps.Keys(header)) {
		for _, hv := range header[k] {
			row("header", k+": "+hv)
		}
	}
	tw.Flush()
	if withBody && !v.BodyMissing {
		fmt.Fprintf(w, "body:\n%s\n", v.Body)
	}
}
