package redislimit_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp/redislimit/redistest"
	"go.uber.org/goleak"
)

// shared is the redis-server most tests use, each under its own name. It is
// nil when the redis-server binary is absent.
var shared *redisServer

const noRedis = "redis-server not found in PATH (apt-get install redis-server): skipping the tests that need a real Redis"

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	redis.SetLogger(quiet{}) // go-redis logs every failed dial; the tests say what matters
	if redistest.Available() {
		s, err := redistest.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		shared = &redisServer{s}
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
	s, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return &redisServer{s}
}

// redisServer is a redistest.Server with the tests' error handling.
type redisServer struct{ *redistest.Server }

// kill ends the server at once, as a crash would, and waits for it.
func (s *redisServer) kill() { s.Kill() }

// restart starts the server again on the same port, empty.
func (s *redisServer) restart(t *testing.T) {
	t.Helper()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
}

// signal sends sig to the server: SIGSTOP freezes it, with its connections
// open and unanswered, SIGCONT thaws it.
func (s *redisServer) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// client returns a client of s, closed when t ends, with context deadlines
// applied as New's documentation asks.
func (s *redisServer) client(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
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
