package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

func runSalvage(e *env, args []string) error {
	fs := newFlagSet(e, "salvage", "-file PATH [-json] [-out NEWPATH]",
		`Reads the entries still readable in a damaged journal file, without changing
it, and prints them as list does. With -out, records them (their keys,
bodies, sealed or not) in a new journal file, every claim freed, so that
"spotflow-journal reconcile -file NEWPATH" can settle them. An entry found
only outside the file's tree may have been settled before the damage: it is
copied without its body, so that it is verified by reference, never sent
again. Keep the damaged file until the new one is reconciled.`)
	file := fs.String("file", "", "the damaged journal `file`")
	out := fs.String("out", "", "a new journal `file` to copy the entries to; it must not exist")
	asJSON := fs.Bool("json", false, "print one JSON object per entry and line, as list -json")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	case *file == "":
		return usageError(fs, "-file is required")
	}
	if _, err := os.Stat(*file); err != nil {
		return badInput(fmt.Errorf("journal file %s: %w", *file, unwrapPath(err)))
	}
	if *out != "" {
		if _, err := os.Lstat(*out); err == nil {
			return badInput(fmt.Errorf("-out %s: the file exists; give a new one", *out))
		}
	}
	entries, unreached, err := salvageFile(e, *file)
	if err != nil {
		return err
	}
	views := make([]journaladmin.EntryView, len(entries))
	for i, en := range entries {
		views[i] = journaladmin.ViewOf(en)
	}
	if *asJSON {
		if err := writeJSONLines(e.stdout, views); err != nil {
			return err
		}
	} else {
		printTable(e.stdout, views, e.now())
	}
	fmt.Fprintf(e.stderr, "%s read from %s\n", entriesCount(len(entries)), *file)
	if *out == "" {
		return nil
	}
	return copyEntries(e, *out, entries, unreached)
}

// salvageFile reads what the journal file holds, and the keys of the
// entries found only outside its tree.
func salvageFile(e *env, file string) ([]spotflowhttp.Entry, []string, error) {
	entries, err := boltjournal.Salvage(file)
	var se *boltjournal.SalvageError
	switch {
	case errors.Is(err, boltjournal.ErrInUse):
		return nil, nil, problem(fmt.Errorf("journal file %s is in use by another process: it is not damaged, or that process could not open it; stop it first", file))
	case err != nil && len(entries) == 0:
		return nil, nil, badInput(err)
	case errors.As(err, &se):
		fmt.Fprintf(e.stderr, "spotflow-journal: warning: %s\n", oneLine(err.Error()))
		return entries, se.Unreached, nil
	case err != nil:
		return nil, nil, badInput(err)
	}
	return entries, nil, nil
}

// copyEntries records entries, free, in a new journal file out. The ones
// found only outside the damaged file's tree (unreached) may have been
// settled before the damage: they are copied without their body, so a
// reconciler verifies them by reference and never sends them again (see
// boltjournal.Salvage).
func copyEntries(e *env, out string, entries []spotflowhttp.Entry, unreached []string) error {
	nj, err := boltjournal.Open(out)
	if err != nil {
		return badInput(fmt.Errorf("-out %s: %w", out, err))
	}
	for _, en := range entries {
		en.Owner, en.Until = "", time.Time{} // free
		if slices.Contains(unreached, en.Key) {
			en.Body, en.Header, en.Sealed, en.BodyMissing = nil, nil, nil, true
		}
		if err := nj.Record(context.Background(), en); err != nil {
			nj.Close()
			return problem(fmt.Errorf("-out %s: entry %q: %w", out, en.Key, err))
		}
	}
	if err := nj.Close(); err != nil {
		return problem(fmt.Errorf("-out %s: %w", out, err))
	}
	if len(unreached) > 0 {
		fmt.Fprintf(e.stderr, "%s found only outside the file's tree, which may have been settled already: "+
			"copied without their body, so reconcile verifies them by reference and never sends them again\n", entriesCount(len(unreached)))
	}
	fmt.Fprintf(e.stderr, "%s recorded in %s, all free: reconcile it with spotflow-journal reconcile -file %s\n", entriesCount(len(entries)), out, out)
	return nil
}
