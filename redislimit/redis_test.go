package redislimit_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// shared is the redis-server most tests use, each under its own name. It is
// nil when the redis-server binary is absent.
var shared *redisServer

const noRedis = "redis-server not found in PATH (apt-get install redis-server): skipping the tests that need a real Redis"

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	redis.SetLogger(quiet{}) // go-redis logs every failed dial; the tests say what matters
	if _, err := exec.LookPath("redis-server"); err == nil {
		s, err := startRedis()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		shared = s
	}
	code := m.Run()
	if shared != nil {
		shared.kill()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			return 1
		}
	}
	return code
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// needRedis returns the shared server, or skips t without one.
func needRedis(t *testing.T) *redisServer {
	t.Helper()
	if shared == nil {
		t.Skip(noRedis)
	}
	return shared
}

// ownRedis starts a server for t alone, for tests that kill or freeze it.
func ownRedis(t *testing.T) *redisServer {
	t.Helper()
	if shared == nil {
		t.Skip(noRedis)
	}
	s, err := startRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	return s
}

// redisServer is a redis-server process on a loopback port, without
// persistence.
type redisServer struct {
	addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *bytes.Buffer // its output, read once it has exited
}

// startRedis starts a server on a free loopback port. The port is free when
// looked at and may be taken before redis-server binds it, so it tries a
// few.
func startRedis() (*redisServer, error) {
	var err error
	for range 5 {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		addr := l.Addr().String()
		l.Close()
		s := &redisServer{addr: addr}
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// start runs redis-server on s.addr and waits, at most 5 s, until it
// answers PING.
func (s *redisServer) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
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
			return fmt.Errorf("redis-server on %s exited: %s", s.addr, strings.TrimSpace(out.String()))
		default:
		}
		if ping(s.addr) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("redis-server on %s did not answer PING within 5 s", s.addr)
}

// ping sends one PING, without go-redis, bounded by a second.
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

// kill ends the server at once, as a crash would, and waits for it.
func (s *redisServer) kill() {
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

// restart starts the server again on the same port, empty.
func (s *redisServer) restart(t *testing.T) {
	t.Helper()
	var err error
	for range 3 { // the port can take a moment to be free again
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal(err)
}

// signal sends sig to the server: SIGSTOP freezes it, with its connections
// open and unanswered, SIGCONT thaws it.
func (s *redisServer) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// client returns a client of s, closed when t ends, with context deadlines
// applied as New's documentation asks.
func (s *redisServer) client(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// recorder is a slog.Handler keeping the records, for tests to look at.
type recorder struct {
	t    *testing.T
	mu   sync.Mutex
	recs []slog.Record
}

func newRecorder(t *testing.T) (*recorder, *slog.Logger) {
	r := &recorder{t: t}
	return r, slog.New(r)
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// count returns how many records have the level and contain substr.
func (r *recorder) count(level slog.Level, substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level && strings.Contains(rec.Message, substr) {
			n++
		}
	}
	return n
}

// dump logs every record through t.
func (r *recorder) dump() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		var b strings.Builder
		rec.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.Key + "=" + a.Value.String())
			return true
		})
		r.t.Logf("log %s %s%s", rec.Level, rec.Message, b.String())
	}
}

// arrivals records when requests reach a test server, by client.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
	by    map[string]int
}

func (a *arrivals) add(client string) time.Time {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.times = append(a.times, now)
	if a.by == nil {
		a.by = map[string]int{}
	}
	a.by[client]++
	return now
}

// rate returns the requests a second that arrived in [from, to).
func (a *arrivals) rate(from, to time.Time) (float64, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, t := range a.times {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds(), n
}

// byClient returns how many requests each client sent, for the log.
func (a *arrivals) byClient() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprint(a.by) // fmt sorts map keys
}
