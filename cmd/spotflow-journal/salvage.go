package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spotflow-go/spotflowhttp/boltjournal"
	"github.com/spotflow-go/spotflowhttp/journaladmin"
)

func runSalvage(e *env, args []string) error {
	fs := newFlagSet(e, "salvage", "-file PATH [-json] [-out NEWPATH]",
		`Reads the entries still readable in a damaged journal file, without changing
it, and prints them as list does. With -out, records them (their keys,
bodies, sealed or not) in a new journal file, every claim freed, so that
"spotflow-journal reconcile -file NEWPATH" can settle them. Keep the damaged
file until they are.`)
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
	entries, err := boltjournal.Salvage(*file)
	if err != nil && len(entries) == 0 {
		return badInput(fmt.Errorf("salvage %s: %w", *file, err))
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "spotflow-journal: warning: %s\n", oneLine(err.Error()))
	}
	views := make([]journaladmin.EntryView, len(entries))
	for i, en := range entries {
		views[i] = journaladmin.ViewOf(en)
	}
	if *asJSON {
		err = writeJSONLines(e.stdout, views)
	} else {
		printTable(e.stdout, views, e.now())
	}
	fmt.Fprintf(e.stderr, "%d entries read from %s\n", len(entries), *file)
	if err != nil || *out == "" {
		return err
	}
	nj, err := boltjournal.Open(*out)
	if err != nil {
		return badInput(fmt.Errorf("-out %s: %w", *out, err))
	}
	for _, en := range entries {
		en.Owner, en.Until = "", time.Time{} // free
		if err := nj.Record(context.Background(), en); err != nil {
			nj.Close()
			return problem(fmt.Errorf("-out %s: entry %q: %w", *out, en.Key, err))
		}
	}
	if err := nj.Close(); err != nil {
		return problem(errors.Join(fmt.Errorf("-out %s", *out), err))
	}
	fmt.Fprintf(e.stderr, "%d entries recorded in %s, all free: reconcile it with spotflow-journal reconcile -file %s\n", len(entries), *out, *out)
	return nil
}
