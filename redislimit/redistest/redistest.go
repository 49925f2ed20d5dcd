// Package redistest starts throwaway redis-server processes on 127.0.0.1,
// for the tests of redislimit and the load runs in the bench module. Each
// server listens on a free loopback port, keeps nothing on disk, and is
// ended by Kill; nothing is left running after it.
//
// A Server is safe for concurrent use by multiple goroutines.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoServer is matched (errors.Is) by Start's error when the redis-server
// binary is not in PATH, so that callers can skip rather than fail.
var ErrNoServer = errors.New("redistest: redis-server not found in PATH (apt-get install redis-server)")

// Available reports whether redis-server is in PATH.
func Available() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// Server is one redis-server process on a loopback port, without
// persistence.
type Server struct {
	addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *bytes.Buffer // its output, read once it has exited
}

// Start starts a server on a free loopback port and returns once it answers
// PING (at most 5 s). The port is free when looked at and may be taken
// before redis-server binds it, so Start tries a few.
func Start() (*Server, error) {
	if !Available() {
		return nil, ErrNoServer
	}
	var err error
	for range 5 {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		addr := l.Addr().String()
		l.Close()
		s := &Server{addr: addr}
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// start runs redis-server on s.addr and waits, at most 5 s, until it
// answers PING.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited, s.out = cmd, exited, out
	s.mu.Unlock()

	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redistest: redis-server on %s exited: %s", s.addr, strings.TrimSpace(out.String()))
		default:
		}
		if ping(s.addr) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Kill()
	return fmt.Errorf("redistest: redis-server on %s did not answer PING within 5 s", s.addr)
}

// ping sends one PING, without a Redis client, bounded by a second.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Kill ends the server at once, as a crash would, and waits for it. It may
// be called more than once.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT) // in case it is frozen
	cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port, empty, after Kill. The
// port can take a moment to be free again, so it tries three times.
func (s *Server) Restart() error {
	var err error
	for range 3 {
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Signal sends sig to the server: syscall.SIGSTOP freezes it, with its
// connections open and unanswered, syscall.SIGCONT thaws it.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Signal(sig)
}
