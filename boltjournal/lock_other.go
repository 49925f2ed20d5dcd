//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package boltjournal

import (
	"os"
	"time"
)

// lockFile does nothing where flock is not available: bbolt still locks the
// file, but only after the check has read it.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error { return nil }
