//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package boltjournal

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockFile takes the lock bbolt takes (flock: exclusive to write, shared to
// read) on f before bbolt does, so that the file is read for checking only
// once no other process can be writing it. bbolt then locks the same open
// file again, which flock grants at once. It gives up after timeout with
// ErrInUse.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return ErrInUse
		}
		time.Sleep(50 * time.Millisecond) // as bbolt polls its own lock
	}
}
