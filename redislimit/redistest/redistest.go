// Package redistest starts throwaway redis-server processes on 127.0.0.1,
// for the tests of redislimit and the load runs in the bench module. Each
// server listens on a free loopback port, keeps nothing on disk but what
// Redis Cluster needs (its nodes file, in a temporary directory removed by
// Kill), and is ended by Kill; nothing is left running after it.
//
// Besides one server (Start), it starts a primary with replicas
// (StartReplicated), which a test promotes by hand after killing the
// primary, and a Redis Cluster (StartCluster), created with
// "redis-cli --cluster create".
//
// A Server and a Cluster are safe for concurrent use by multiple
// goroutines.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoServer is matched (errors.Is) by Start's error when the redis-server
// binary is not in PATH, so that callers can skip rather than fail.
var ErrNoServer = errors.New("redistest: redis-server not found in PATH (apt-get install redis-server)")

// ErrNoCLI is matched (errors.Is) by StartCluster's error when the
// redis-cli binary, which creates the cluster, is not in PATH. Debian's
// redis-server package depends on redis-tools, which has it.
var ErrNoCLI = errors.New("redistest: redis-cli not found in PATH (apt-get install redis-tools)")

// Available reports whether redis-server is in PATH.
func Available() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// waitFor bounds every wait of this package for a server to reach a state
// (a replica in sync, a cluster ok): generous, for a loaded machine, and
// still short of a test's timeout.
const waitFor = 20 * time.Second

// Server is one redis-server process on a loopback port, without
// persistence.
type Server struct {
	addr  string
	extra []string // more redis-server arguments, given to Start

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *logBuffer // its output
	dir    string     // its working directory, for a cluster's nodes file
	link   *lagLink   // a replica's link to its primary, if lagged
}

// Start starts a server on a free loopback port and returns once it answers
// PING (at most 5 s). extra are more redis-server arguments, as on its
// command line: "--appendonly", "yes". The port is free when looked at and
// may be taken before redis-server binds it, so Start tries a few.
func Start(extra ...string) (*Server, error) {
	return startOn(false, extra)
}

// startOn starts a server on a free port; with bus, a port whose cluster
// bus port (port + 10000) is free too.
func startOn(bus bool, extra []string) (*Server, error) {
	if !Available() {
		return nil, ErrNoServer
	}
	var err error
	for range 5 {
		var port int
		if port, err = freePort(bus); err != nil {
			continue
		}
		s := &Server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), extra: extra}
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// freePort returns a loopback port free when looked at; with bus, one
// whose port + 10000 is free too.
func freePort(bus bool) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port, nil
		}
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		l.Close()
		if err != nil {
			continue
		}
		b.Close()
		return port, nil
	}
	return 0, errors.New("redistest: no free loopback port with its cluster bus port free")
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// start runs redis-server on s.addr and waits, at most 5 s, until it
// answers PING.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--loglevel", "warning",
		// A replica's first sync starts at once, not after the 5 s a
		// primary waits by default for more replicas to share it.
		"--repl-diskless-sync-delay", "0"}, s.extra...)
	cmd := exec.Command("redis-server", args...)
	out := new(logBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited, s.out, s.dir = cmd, exited, out, dir
	s.mu.Unlock()

	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			os.RemoveAll(dir)
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
	cmd, exited, dir, link := s.cmd, s.exited, s.dir, s.link
	s.link = nil
	s.mu.Unlock()
	if link != nil {
		link.Close()
	}
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT) // in case it is frozen
	cmd.Process.Kill()
	<-exited
	os.RemoveAll(dir)
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

// Log returns what the server has written to its log (its standard output
// and error) so far: at the default "--loglevel warning", its warnings;
// Start's extra "--loglevel", "notice" adds each replication step.
func (s *Server) Log() string {
	s.mu.Lock()
	out := s.out
	s.mu.Unlock()
	if out == nil {
		return ""
	}
	return out.String()
}

// logBuffer is a server's output, written by the goroutine of its exec.Cmd
// and read by Log at any time. It keeps the first maxLog bytes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// maxLog bounds what a logBuffer keeps: a server's log over a test is a few
// kilobytes.
const maxLog = 1 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxLog - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Signal sends sig to the server: syscall.SIGSTOP freezes it, with its
// connections open and unanswered, syscall.SIGCONT thaws it.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Signal(sig)
}
