package boltjournal

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	berrors "go.etcd.io/bbolt/errors"
)

// fileError is an error about the journal file at path: one line that
// names the file, says what is wrong and what to do. It wraps kind.
type fileError struct {
	op, path string
	what     string
	advice   string
	kind     error
}

func (e *fileError) Error() string {
	return "boltjournal: " + e.op + " " + e.path + ": " + e.what + ": " + e.advice
}

func (e *fileError) Unwrap() error { return e.kind }

// damaged returns the error for a file that is not a sound journal, why
// saying what was found.
func damaged(op, path, why string) error {
	return &fileError{
		op: op, path: path, kind: ErrDamaged,
		what: "damaged journal (" + oneLine(why) + ")",
		advice: "move it aside, read what it still holds with boltjournal.Salvage or `spotflow-journal salvage -file " +
			path + "`, and start with a new file",
	}
}

// inUse returns the error for a file another process holds.
func inUse(op, path string) error {
	return &fileError{
		op: op, path: path, kind: ErrInUse,
		what:   "in use by another process (a running service holds it)",
		advice: "stop that process, or read its pending entries through its admin handler",
	}
}

// openErr turns what opening path failed with into the error Open returns:
// bbolt's lock timeout becomes [ErrInUse], its complaints about the file
// [ErrDamaged]; an error already about the file is kept.
func openErr(path string, err error) error {
	var fe *fileError
	switch {
	case errors.As(err, &fe):
		return err
	case errors.Is(err, berrors.ErrTimeout), errors.Is(err, ErrInUse):
		return inUse("open", path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return damaged("open", path, err.Error())
	case strings.HasPrefix(err.Error(), "boltjournal: "):
		return err
	}
	return fmt.Errorf("boltjournal: open %s: %w", path, err)
}

// protect runs fn, which hands bytes of the file at path to bbolt, and
// turns a panic inside it, or a memory fault (a read past the end of the
// file's memory map, which would otherwise kill the process with "fatal
// error: fault"), into an error wrapping [ErrDamaged]. bbolt trusts the
// file; the check before it (checkFile) is the first defence, this the
// second, for damage the check does not know of or a file changed under it.
func protect(op, path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(op, path, fmt.Sprint("bbolt: ", r))
		}
	}()
	return fn()
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
