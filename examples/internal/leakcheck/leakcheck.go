// Package leakcheck is the TestMain of every example package: it fails the
// package if a test leaves a goroutine behind.
package leakcheck

import (
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Main runs the tests, closes http.DefaultTransport's idle connections (their
// goroutines are not leaks), then looks for goroutines left behind.
func Main(m *testing.M) {
	code := m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goroutine leak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}
