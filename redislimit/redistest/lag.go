package redistest

import (
	"errors"
	"net"
	"sync"
	"time"
)

// lagLink is a TCP proxy on a loopback port to a target: what one side
// sends reaches the other lag later, as over a link between two zones.
// When either side closes, what is still in flight is dropped and both
// are closed: a link to a primary that died goes down with its host, and
// what it had sent but not yet delivered is lost, which loopback, where
// nothing is ever in flight for long, would not show.
type lagLink struct {
	l      net.Listener
	target string
	lag    time.Duration
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

// newLagLink starts a lagLink to target on a free loopback port.
func newLagLink(target string, lag time.Duration) (*lagLink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k := &lagLink{l: l, target: target, lag: lag}
	k.wg.Go(k.serve)
	return k, nil
}

// Addr is where to connect to reach the target.
func (k *lagLink) Addr() string { return k.l.Addr().String() }

func (k *lagLink) serve() {
	for {
		down, err := k.l.Accept()
		if err != nil {
			return // closed
		}
		up, err := net.DialTimeout("tcp", k.target, time.Second)
		if err != nil {
			down.Close()
			continue
		}
		if !k.track(down, up) {
			return
		}
		k.wg.Go(func() { k.carry(down, up) })
		k.wg.Go(func() { k.carry(up, down) })
	}
}

// track keeps the connections for Close, or closes them if the link is
// closed already.
func (k *lagLink) track(cs ...net.Conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	k.conns = append(k.conns, cs...)
	return true
}

// chunk is what one read returned, and when.
type chunk struct {
	b  []byte
	at time.Time
}

// carry copies src to dst, each chunk lag after it was read. When src
// ends, it closes both at once, dropping what is in flight.
func (k *lagLink) carry(src, dst net.Conn) {
	flight := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range flight {
			time.Sleep(time.Until(c.at.Add(k.lag)))
			if _, err := dst.Write(c.b); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case flight <- chunk{append([]byte(nil), buf[:n]...), time.Now()}:
			case <-done:
				err = errors.New("the other side is closed")
			}
		}
		if err != nil {
			break
		}
	}
	src.Close()
	dst.Close() // what is in flight is lost
	close(flight)
	<-done
}

// Close stops the link and closes every connection through it, and
// returns once all its goroutines have ended.
func (k *lagLink) Close() {
	k.mu.Lock()
	k.closed = true
	cs := k.conns
	k.conns = nil
	k.mu.Unlock()
	k.l.Close()
	for _, c := range cs {
		c.Close()
	}
	k.wg.Wait()
}
