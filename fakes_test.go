package spotflowhttp_test

import (
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/goleak"

	"github.com/spotflow-go/spotflowhttp/spotflowtest"
)

// TestMain fails the package if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
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

// fakeClock is the simulator package's fake clock: Sleep returns at once and
// moves time on.
type fakeClock = spotflowtest.Clock

func newFakeClock() *fakeClock { return spotflowtest.NewClock(time.Now()) }

// roundTripperFunc is an in-memory RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readCloseCounter counts reads and closes of a body.
type readCloseCounter struct {
	r      io.Reader
	reads  atomic.Int64
	bytes  atomic.Int64
	closes atomic.Int64
}

func newReadCloseCounter(r io.Reader) *readCloseCounter { return &readCloseCounter{r: r} }

func (c *readCloseCounter) Read(p []byte) (int, error) {
	c.reads.Add(1)
	n, err := c.r.Read(p)
	c.bytes.Add(int64(n))
	return n, err
}

func (c *readCloseCounter) Close() error {
	c.closes.Add(1)
	return nil
}

// closeCounting wraps a base transport so that every response body it
// returns counts its closes.
type closeCounting struct {
	base   http.RoundTripper
	mu     sync.Mutex
	bodies []*readCloseCounter
}

func (c *closeCounting) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b := newReadCloseCounter(resp.Body)
	orig := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{b, closerFunc(func() error { b.Close(); return orig.Close() })}
	c.mu.Lock()
	c.bodies = append(c.bodies, b)
	c.mu.Unlock()
	return resp, nil
}

// unclosed counts the responses not closed yet.
func (c *closeCounting) unclosed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range c.bodies {
		if b.closes.Load() == 0 {
			n++
		}
	}
	return n
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func constantBackoff(d time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff { return backoff.NewConstantBackOff(d) }
}
