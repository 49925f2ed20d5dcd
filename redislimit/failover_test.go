package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp/journaltest"
	"github.com/spotflow-go/spotflowhttp/redislimit"
	"github.com/spotflow-go/spotflowhttp/redislimit/redistest"
)

// pair is a primary with one replica, killed when the test ends.
type pair struct{ primary, replica *redistest.Server }

// zoneLag is how long replication takes each way in the failover tests: a
// replica in another zone of the same region, as managed Redis places
// them. On loopback replication takes microseconds, and a failover would
// show almost nothing of what it can lose.
const zoneLag = 2 * time.Millisecond

// startPair starts a primary and its replica, in sync, linked with lag, or
// skips t where redis-server is missing.
func startPair(t *testing.T, lag time.Duration) pair {
	t.Helper()
	if shared == nil {
		t.Skip(noRedis)
	}
	p, rs, err := redistest.StartReplicated(1, lag, "--loglevel", "notice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	t.Cleanup(rs[0].Kill)
	return pair{p, rs[0]}
}

// failover is one run of recordThroughFailover: what was acknowledged,
// when the primary was killed, and what the promoted replica holds.
type failover struct {
	failed  int64                // Records that failed before the kill
	acked   map[string]time.Time // key → when its Record returned nil
	killed  time.Time            // just before SIGKILL
	atKill  replication          // just before the kill
	pending map[string]bool      // keys Pending on the promoted replica
	logs    string               // both servers' logs, for a failed run
}

// replication is what a primary and its replica said about their link.
type replication struct {
	primary, replica string // INFO replication, or the error reading it
}

// linkUp reports whether the replica had its link to the primary up, and
// no sync in progress.
func (r replication) linkUp() bool {
	return infoField(r.replica, "master_link_status") == "up" && infoField(r.replica, "master_sync_in_progress") == "0"
}

// behind returns how many bytes of the primary's replication stream the
// replica had not processed, or -1 if either did not say: at most, as the
// primary is asked after the replica.
func (r replication) behind() int64 {
	p, err1 := strconv.ParseInt(infoField(r.primary, "master_repl_offset"), 10, 64)
	q, err2 := strconv.ParseInt(infoField(r.replica, "master_repl_offset"), 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return p - q
}

// String is the state in one line, with the replica's INFO when its link
// was not up.
func (r replication) String() string {
	s := fmt.Sprintf("replica link %s, sync in progress %s, %d bytes behind the primary",
		infoField(r.replica, "master_link_status"), infoField(r.replica, "master_sync_in_progress"), r.behind())
	if !r.linkUp() {
		s += "\nprimary: " + r.primary + "\nreplica: " + r.replica
	}
	return s
}

// replicationOf reads INFO replication on both servers of p, the
// replica's first, so that behind is not below what it was then.
func replicationOf(p pair) replication {
	var r replication
	for _, x := range []struct {
		s   *redistest.Server
		out *string
	}{{p.replica, &r.replica}, {p.primary, &r.primary}} {
		info, err := x.s.Do("INFO", "replication")
		if err != nil {
			info = err.Error()
		}
		*x.out = info
	}
	return r
}

// lost returns the acknowledged keys the promoted replica does not hold,
// and the longest time any of them was acknowledged before the kill.
func (f failover) lost() (keys []string, oldest time.Duration) {
	for k, at := range f.acked {
		if !f.pending[k] {
			keys = append(keys, k)
			oldest = max(oldest, f.killed.Sub(at))
		}
	}
	slices.Sort(keys)
	return keys, oldest
}

// recordThroughFailover has writers goroutines Record n entries in all
// through a client of the primary, SIGKILLs the primary from the writer
// whose Record is the killAfter-th to return nil, so that the others are
// mid-call, promotes the replica, and reads Pending there through a new
// client, as an application reconnecting to the new primary would. With
// early above 0, it first Records writers entries more, one by one, and
// waits early before starting the writers: entries at least that old at
// the kill, which a replica that receives the primary's writes has.
func recordThroughFailover(t *testing.T, p pair, n, writers, killAfter int, early time.Duration, opts ...redislimit.JournalOption) failover {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: p.primary.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	j, err := redislimit.NewJournal(rdb, "failover", opts...)
	if err != nil {
		t.Fatal(err)
	}
	f := failover{acked: map[string]time.Time{}}
	if early > 0 {
		for i := range writers {
			key := fmt.Sprintf("early%02d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := j.Record(ctx, journaltest.Sample(key, 0))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			f.acked[key] = time.Now()
		}
		time.Sleep(early)
	}
	var (
		mu     sync.Mutex
		next   atomic.Int64
		failed atomic.Int64
		kill   sync.Once
		wg     sync.WaitGroup
		acked  int
		dead   atomic.Bool
	)
	for range writers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				key := fmt.Sprintf("e%04d", i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := j.Record(ctx, journaltest.Sample(key, time.Duration(i)*time.Millisecond))
				cancel()
				if err != nil {
					if dead.Load() {
						return // the primary is gone: so is every later Record
					}
					// Not acknowledged (a WAIT that timed out on a
					// stalled machine): the call it stands for is
					// not sent, and the test does not count it. So
					// many that the run would last minutes end it.
					if failed.Add(1) > 2*int64(writers) {
						return
					}
					continue
				}
				mu.Lock()
				f.acked[key] = time.Now()
				acked++
				now := acked == killAfter
				mu.Unlock()
				if now {
					kill.Do(func() {
						f.atKill = replicationOf(p)
						dead.Store(true)
						f.killed = time.Now()
						p.primary.Kill()
					})
				}
			}
		})
	}
	wg.Wait()
	f.failed = failed.Load()
	if f.killed.IsZero() {
		t.Fatalf("%d of %d Records acknowledged (%d failed), the kill was due after %d", acked, n, f.failed, killAfter)
	}
	if err := p.replica.Promote(); err != nil {
		t.Fatal(err)
	}
	f.logs = "primary's log:\n" + p.primary.Log() + "\nreplica's log:\n" + p.replica.Log()
	after := redis.NewClient(&redis.Options{Addr: p.replica.Addr(), ContextTimeoutEnabled: true})
	defer after.Close()
	j2, err := redislimit.NewJournal(after, "failover")
	if err != nil {
		t.Fatal(err)
	}
	es, err := j2.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.pending = map[string]bool{}
	for _, e := range es {
		f.pending[e.Key] = true
	}
	return f
}

// failoverSeed makes the kill points of the failover tests the same from
// run to run; the interleaving of the writers is not.
const failoverSeed = 20

// With WithReplicas(1, 3 s), every entry whose Record returned nil is on the
// replica when the primary is SIGKILLed in the middle of 400 Records from
// 16 goroutines, and so Pending on it once it is promoted. The replica is
// 20 ms away, as in another region, so that entries are always in flight
// at the kill: with zoneLag, a loaded machine sometimes runs no writer in
// the last 2 ms before it, and the test could not tell a Record that
// waits for the replica from one that does not. Five runs.
func TestJournalWithReplicasSurvivesFailover(t *testing.T) {
	rng := rand.New(rand.NewPCG(failoverSeed, 1))
	for run := range 5 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			killAfter := 100 + rng.IntN(200)
			f := recordThroughFailover(t, startPair(t, 20*time.Millisecond), 400, 16, killAfter, 0, redislimit.WithReplicas(1, 3*time.Second))
			lost, _ := f.lost()
			t.Logf("killed after %d acknowledged Records: %d acknowledged in all, %d failed before the kill, %d Pending on the promoted replica, %d acknowledged entries lost",
				killAfter, len(f.acked), f.failed, len(f.pending), len(lost))
			if len(lost) > 0 {
				t.Logf("at the kill: %v\n%s", f.atKill, f.logs)
				t.Errorf("%d acknowledged entries lost in the failover: %v", len(lost), lost)
			}
		})
	}
}

// Without WithReplicas, a failover loses what the primary acknowledged but
// had not yet sent to the replica when it died. This measures it, over
// five runs killing the primary in the middle of 1,000 Records from 16
// goroutines; the README gives the figures. What it asserts is the
// mechanism: the lost entries are only the last acknowledged before the
// kill (within replicationWindow), never older ones; 16 entries recorded
// 100 ms more than that before the burst are there so that a replica that
// had none of the run fails it however short the burst (75 to 150 ms
// here: with the link made to drop every write, all five runs lost all
// and passed without them).
//
// That holds for a replica receiving the primary's writes, as
// StartReplicated's replica is when the writers start. A replica whose
// link is down or resyncing at the kill loses every write since its link
// went down, which no window bounds: such a run is logged, with both
// servers' logs, and not held to the window; more than one in five fails
// the test, as a link that keeps breaking on loopback is not chance.
func TestJournalFailoverLossWithoutReplicas(t *testing.T) {
	const replicationWindow = 500 * time.Millisecond
	rng := rand.New(rand.NewPCG(failoverSeed, 2))
	var counts []int
	linkDown := 0
	for run := range 5 {
		killAfter := 200 + rng.IntN(600)
		f := recordThroughFailover(t, startPair(t, zoneLag), 1000, 16, killAfter, replicationWindow+100*time.Millisecond)
		lost, oldest := f.lost()
		counts = append(counts, len(lost))
		t.Logf("run %d: killed after %d acknowledged Records; %d acknowledged in all, %d lost, acknowledged at most %v before the kill; at the kill: %v",
			run, killAfter, len(f.acked), len(lost), oldest, f.atKill)
		switch {
		case !f.atKill.linkUp():
			linkDown++
			t.Logf("run %d: the replica's link was not up at the kill: what it lost is not bounded\n%s", run, f.logs)
		case oldest > replicationWindow:
			t.Log(f.logs)
			t.Errorf("run %d: an entry acknowledged %v before the kill was lost, want only the last %v", run, oldest, replicationWindow)
		}
	}
	t.Logf("acknowledged entries lost per failover, 5 runs: %v; replica's link down at the kill: %d", counts, linkDown)
	if linkDown > 1 {
		t.Errorf("the replica's link was down at the kill in %d of 5 runs, want at most 1", linkDown)
	}
}

// admit is one Wait that returned nil in TestLimiterThroughFailover.
type admit struct {
	proc int
	woke time.Time
	slot time.Time // its slot by Redis's clock; zero when paced locally
}

// at is when a is counted: its slot when Redis gave one, which a loaded
// machine does not blur, else when its Wait returned.
func (a admit) at() time.Time {
	if a.slot.IsZero() {
		return a.woke
	}
	return a.slot
}

type admitKey struct{}

// waitLoop has waiters goroutines per Limiter call Wait until ctx ends, and
// returns every admission.
func waitLoop(t *testing.T, ctx context.Context, ls []*redislimit.Limiter, waiters int) []admit {
	var (
		mu  sync.Mutex
		out []admit
		wg  sync.WaitGroup
	)
	for i, l := range ls {
		redislimit.OnAdmitted(l, func(ctx context.Context, _, slot time.Time) {
			ctx.Value(admitKey{}).(*admit).slot = slot
		})
		for range waiters {
			wg.Go(func() {
				for ctx.Err() == nil {
					a := &admit{proc: i}
					if err := l.Wait(context.WithValue(ctx, admitKey{}, a)); err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("process %d: %v", i, err)
						}
						return
					}
					a.woke = time.Now()
					mu.Lock()
					out = append(out, *a)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return out
}

// count returns the admissions in [from, to), and how many of them Redis
// gave a slot.
func count(as []admit, from, to time.Time) (all, redis int) {
	for _, a := range as {
		if at := a.at(); !at.Before(from) && at.Before(to) {
			all++
			if !a.slot.IsZero() {
				redis++
			}
		}
	}
	return all, redis
}

// busiestSecond returns the most admissions in any one second, and when
// that second starts.
func busiestSecond(as []admit) (int, time.Time) {
	ts := make([]time.Time, len(as))
	for i, a := range as {
		ts[i] = a.at()
	}
	slices.SortFunc(ts, time.Time.Compare)
	best, from, j := 0, time.Time{}, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= time.Second {
			j++
		}
		if n := i - j + 1; n > best {
			best, from = n, ts[j]
		}
	}
	return best, from
}

// logged returns the times of the records with level and substr logged
// at or after since.
func (r *recorder) logged(level slog.Level, substr string, since time.Time) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ts []time.Time
	for _, rec := range r.recs {
		if rec.Level == level && strings.Contains(rec.Message, substr) && !rec.Time.Before(since) {
			ts = append(ts, rec.Time)
		}
	}
	return ts
}

// firstLog returns when the first record with level and substr was logged
// at or after since, and how many there were.
func (r *recorder) firstLog(level slog.Level, substr string, since time.Time) (time.Time, int) {
	ts := r.logged(level, substr, since)
	if len(ts) == 0 {
		return time.Time{}, 0
	}
	return ts[0], len(ts)
}

// lastLog returns when the last record with level and substr was logged
// at or after since, and how many there were.
func (r *recorder) lastLog(level slog.Level, substr string, since time.Time) (time.Time, int) {
	ts := r.logged(level, substr, since)
	if len(ts) == 0 {
		return time.Time{}, 0
	}
	return ts[len(ts)-1], len(ts)
}

// Two processes, 32 waiters each, share a limit of 100 a second through a
// primary that is SIGKILLed after 3 s; its replica is promoted 2.5 s later
// and the clients' endpoint moved to it, as a managed Redis does with its
// primary endpoint. The Limiter does not ride through: it falls back to its
// local pace (a quarter of the limit each, 50 a second in all) within
// 1.5 s of the kill, and returns to the shared schedule within 3 s of the
// promotion, the replica having kept the schedule. Before and after, it
// admits no more than the limit (+1 %). In the second around the kill, the
// slots reserved before it and the local pace add up: at most the limit
// and the fallback together. The timeout is a second, as in the other
// tests on a real Redis: on a loaded machine, shorter ones expire with
// Redis up, and the Limiter falls back before the kill.
func TestLimiterThroughFailover(t *testing.T) {
	p := startPair(t, zoneLag)
	var endpoint atomic.Value
	endpoint.Store(p.primary.Addr())
	rec, logger := newRecorder(t)
	const (
		rate, fallback = 100, 0.25
		phase          = 3 * time.Second
		detection      = 2500 * time.Millisecond
		local          = 2 * fallback * rate
	)
	limit := redis_rate.Limit{Rate: rate, Period: time.Second, Burst: 1}
	var ls []*redislimit.Limiter
	for range 2 {
		rdb := redis.NewClient(&redis.Options{
			Addr: "redis-primary.invalid:6379", // the managed endpoint's name, dialled where it points
			Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, endpoint.Load().(string))
			},
			ContextTimeoutEnabled: true,
		})
		t.Cleanup(func() { rdb.Close() })
		ls = append(ls, newLimiter(t, rdb, t.Name(), limit, redislimit.WithFallback(fallback), patient, redislimit.WithLogger(logger)))
	}
	start := time.Now()
	killAt, promoteAt, end := start.Add(phase), start.Add(phase+detection), start.Add(2*phase+detection+time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	done := make(chan []admit)
	go func() { done <- waitLoop(t, ctx, ls, 32) }()

	time.Sleep(time.Until(killAt))
	killed := time.Now()
	p.primary.Kill()
	time.Sleep(time.Until(promoteAt))
	if err := p.replica.Promote(); err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	endpoint.Store(p.replica.Addr())
	promoted := time.Now()
	as := <-done
	defer rec.dump()

	fellBack, warns := rec.firstLog(slog.LevelWarn, "falling back", killed)
	back, infos := rec.lastLog(slog.LevelInfo, "reachable again", promoted)
	ph := []struct {
		name     string
		from, to time.Time
	}{
		{"before the kill", start.Add(500 * time.Millisecond), killed},
		// From when the slots reserved before the kill (64 waiters, 10 ms
		// apart) are spent and the local pace has begun.
		{"without Redis", fellBack.Add(800 * time.Millisecond), promoted},
		{"after", back.Add(500 * time.Millisecond), end.Add(-100 * time.Millisecond)},
	}
	var n, byRedis [3]int
	var r [3]float64
	for i, x := range ph {
		n[i], byRedis[i] = count(as, x.from, x.to)
		r[i] = float64(n[i]) / x.to.Sub(x.from).Seconds()
		t.Logf("%s: %d admissions (%d by Redis) in %v, %.1f/s", x.name, n[i], byRedis[i], x.to.Sub(x.from).Round(time.Millisecond), r[i])
	}
	busiest, busiestAt := busiestSecond(as)
	t.Logf("fell back %v after the kill, back on Redis %v after the promotion (both processes); busiest second: %d admissions, from %v after the kill",
		fellBack.Sub(killed).Round(time.Millisecond), back.Sub(promoted).Round(time.Millisecond), busiest, busiestAt.Sub(killed).Round(time.Millisecond))

	if warns < 2 || fellBack.Sub(killed) > 1500*time.Millisecond {
		t.Errorf("%d processes fell back after the kill, the first %v after it; want both, within 1.5 s", warns, fellBack.Sub(killed))
	}
	if infos < 2 || back.Sub(promoted) > 3*time.Second {
		t.Errorf("%d processes came back to Redis after the promotion, the last %v after it; want both, within 3 s", infos, back.Sub(promoted))
	}
	for _, i := range []int{0, 2} {
		if r[i] > rate*1.01 || r[i] < rate*0.9 {
			t.Errorf("%s: %.1f/s, want the limit, %d/s: at most +1 %%, and at least -10 %% on a loaded machine", ph[i].name, r[i], rate)
		}
	}
	if r[1] < 0.75*local || r[1] > 1.25*local || byRedis[1] > 0 {
		t.Errorf("without Redis: %.1f/s, %d by Redis; want the fallback's %.0f/s ± 25 %%, none by Redis", r[1], byRedis[1], local)
	}
	if most := int(rate+local) + 5; busiest > most {
		t.Errorf("%d admissions in the busiest second, want at most the limit and the fallback together, %d", busiest, most)
	}
}
