// Command spotflow-journal shows an operator the journal of a service that
// uses spotflowhttp, and settles what a person decides: the pending keyed
// creates (payments, transfers) whose outcome is not known yet.
//
// Usage:
//
//	spotflow-journal list      -file PATH [-json]
//	spotflow-journal show      -file PATH [-body] [-json] KEY
//	spotflow-journal resolve   -file PATH -outcome created|not_created [-note TEXT] [-audit FILE] KEY
//	spotflow-journal reconcile -file PATH [-base-url URL] [-json] [-audit FILE]
//	spotflow-journal salvage   -file PATH [-json] [-out NEWPATH]
//
// Instead of -file, a journal in Redis is named by -redis URL and -name
// NAME (as given to redislimit.NewJournal), and the journal of a running
// service by -admin URL, where it mounts a journaladmin handler (list, show
// and resolve only). Flags come before the entry's key. Each subcommand's
// -h explains its flags; the README's "Operating the journal" section has a
// session.
//
// Secrets come from the environment or from files, never from flags:
//
//	SPOTFLOW_SECRET_KEY            the API key reconcile uses for entries without an account label
//	SPOTFLOW_SECRET_KEY_<LABEL>    the key for entries of account LABEL (upper-cased; other than A-Z and 0-9 becomes _)
//	SPOTFLOW_JOURNAL_KEY           the key of a sealed journal: 32 bytes, as 64 hex digits or base64 (or -key-file)
//	SPOTFLOW_JOURNAL_OLD_KEYS      old keys of a sealed journal, comma separated (or -old-key-file, repeated)
//	SPOTFLOW_REDIS_PASSWORD        the Redis password, instead of one in the -redis URL
//	SPOTFLOW_ADMIN_TOKEN           the bearer token of a journaladmin handler made WithToken
//
// Exit status: 0 done; 1 the command ran but found a problem (the journal
// is in use by another process, Redis or the admin URL cannot be reached,
// an entry is held by a live call, reconcile left an entry needing a
// human); 2 bad usage or bad input (an unknown flag, a missing argument, a
// missing file, a file that is not a journal or is damaged, a wrong key, no
// such entry).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit statuses.
const (
	exitOK      = 0
	exitProblem = 1 // ran, and found a problem
	exitUsage   = 2 // bad usage or bad input
)

// exitError is an error with the exit status it calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// badInput marks err as the user's: exit status 2.
func badInput(err error) error { return &exitError{code: exitUsage, err: err} }

// problem marks err as something found while running: exit status 1.
func problem(err error) error { return &exitError{code: exitProblem, err: err} }

// errUsage is returned once the usage has been printed: exit status 2
// with nothing more to say.
var errUsage = errors.New("usage")

type command struct {
	name    string
	summary string
	run     func(env *env, args []string) error
}

var commands = []command{
	{"list", "the pending entries, oldest first", runList},
	{"show", "one entry (its body only with -body)", runShow},
	{"resolve", "settle an entry with a person's decision, and write it to an audit file", runResolve},
	{"reconcile", "one pass of a Reconciler: ask Spotflow what became of each free entry", runReconcile},
	{"salvage", "read the entries out of a damaged journal file, and copy them to a new one", runSalvage},
}

func main() {
	os.Exit(run(os.Args[1:], newEnv(os.Stdout, os.Stderr)))
}

// run runs the command line args and returns the exit status. A panic in
// a library becomes one line on stderr, not a stack trace.
func run(args []string, e *env) (code int) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(e.stderr, "spotflow-journal: internal error: %v\n", oneLine(fmt.Sprint(p)))
			code = exitProblem
		}
	}()
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" || name == "help" {
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == name {
			return exitCode(e, c.run(e, args[1:]))
		}
	}
	fmt.Fprintf(e.stderr, "spotflow-journal: unknown command %q\n", name)
	usage(e.stderr)
	return exitUsage
}

func exitCode(e *env, err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "spotflow-journal: %s\n", oneLine(err.Error()))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitProblem
}

func usage(w io.Writer) {
	fmt.Fprint(w, `spotflow-journal shows and settles the pending entries of a spotflowhttp journal.

Usage: spotflow-journal COMMAND [flags] [KEY]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
The journal is -file PATH (boltjournal), -redis URL -name NAME (redislimit),
or -admin URL (the journaladmin handler of a running service). Run
"spotflow-journal COMMAND -h" for a command's flags and environment.
Exit status: 0 done, 1 a problem found (journal in use, entry held, needs a
human), 2 bad usage or bad input.
`)
}

// oneLine keeps an error to one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
