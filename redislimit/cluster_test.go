package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/spotflow-go/spotflowhttp"
	"github.com/spotflow-go/spotflowhttp/journaltest"
	"github.com/spotflow-go/spotflowhttp/redislimit"
	"github.com/spotflow-go/spotflowhttp/redislimit/redistest"
	"github.com/spotflow-go/spotflowhttp/webhook"
	"github.com/spotflow-go/spotflowhttp/webhook/deduptest"
)

// testCluster is a Redis Cluster of three masters, each with one replica,
// started for TestClusterMode.
type testCluster struct {
	*redistest.Cluster
	replicaOf map[string]*redistest.Server // a master's address → its replica
}

// startCluster starts the cluster, killed when t ends, or skips t where
// redis-server or redis-cli is missing.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	if shared == nil {
		t.Skip(noRedis)
	}
	start := time.Now()
	c, err := redistest.StartCluster(3, 1)
	if errors.Is(err, redistest.ErrNoCLI) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	tc := &testCluster{Cluster: c, replicaOf: map[string]*redistest.Server{}}
	for _, s := range c.Nodes() {
		info, err := s.Do("INFO", "replication")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "role:slave") {
			tc.replicaOf["127.0.0.1:"+infoField(info, "master_port")] = s
		}
	}
	if len(tc.replicaOf) != 3 {
		t.Fatalf("replicas of %d masters, want 3", len(tc.replicaOf))
	}
	t.Logf("cluster of 3 masters and 3 replicas up in %v", time.Since(start).Round(time.Millisecond))
	return tc
}

// infoField returns the value of name in an INFO reply.
func infoField(info, name string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+":"); ok {
			return v
		}
	}
	return ""
}

// client returns a cluster client, closed when t ends, with context
// deadlines applied as New's documentation asks.
func (c *testCluster) client(t *testing.T) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// masterOf returns the address of the master that owns key's slot.
func masterOf(t *testing.T, cc *redis.ClusterClient, key string) string {
	t.Helper()
	m, err := cc.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return m.Options().Addr
}

// namesOnEveryMaster returns n names prefix-i whose keys, key(name), land
// on the three masters in turn, so that what uses them is tried on every
// master.
func namesOnEveryMaster(t *testing.T, cc *redis.ClusterClient, n int, prefix string, key func(name string) string) []string {
	t.Helper()
	per := (n + 2) / 3
	byMaster := map[string][]string{}
	var order []string
	for i := 0; len(order) < 3 || len(byMaster[order[0]]) < per || len(byMaster[order[1]]) < per || len(byMaster[order[2]]) < per; i++ {
		if i == 10000 {
			t.Fatalf("no %d names with keys on each of 3 masters in 10,000 tries", per)
		}
		name := fmt.Sprintf("%s-%d", prefix, i)
		m := masterOf(t, cc, key(name))
		if byMaster[m] == nil {
			order = append(order, m)
		}
		byMaster[m] = append(byMaster[m], name)
	}
	var names []string
	for i := range n {
		names = append(names, byMaster[order[i%3]][i/3])
	}
	return names
}

func journalSet(name string) string { return "spotflowhttp:{" + name + "}:journal" }

// Through redis.NewClusterClient on a cluster of three masters, each with
// a replica, the Limiter keeps its rate and shares its cool-downs, the
// Journal and the WebhookDedup keep their contracts, on every master: the
// keys of one name share a hash slot (their braces), so the scripts, which
// touch several keys at once, raise no CROSSSLOT error. WithReplicas works
// there: WAIT goes to the master that owns the entry's slot.
func TestClusterMode(t *testing.T) {
	c := startCluster(t)
	t.Run("LimiterKeepsItsRate", func(t *testing.T) { clusterLimiterRate(t, c) })
	t.Run("CoolDownIsShared", func(t *testing.T) { clusterCoolDown(t, c) })
	t.Run("Journal", func(t *testing.T) { clusterJournal(t, c) })
	t.Run("JournalWaitsForTheSlotsReplica", func(t *testing.T) { clusterJournalReplicas(t, c) })
	t.Run("WebhookDedup", func(t *testing.T) { clusterDedup(t, c) })
}

// clusterLimiterRate: four processes, each with its own cluster client,
// sixteen waiters each, get the whole rate and no more, within 1 %, as
// TestScheduleAggregateRate measures it on one server.
func clusterLimiterRate(t *testing.T, c *testCluster) {
	const (
		rate   = 100
		window = 3 * time.Second
	)
	limit := redis_rate.Limit{Rate: rate, Period: time.Second, Burst: 1}
	var ls []*redislimit.Limiter
	for range 4 {
		ls = append(ls, newLimiter(t, c.client(t), t.Name(), limit, patient))
	}
	as := contend(t, ls, 16, window+time.Second)
	if len(as) == 0 {
		t.Fatal("no admissions")
	}
	from := as[0].slot.Add(500 * time.Millisecond)
	got := within(as, func(a admission) time.Time { return a.slot }, from, window)
	want := int(rate * window.Seconds())
	t.Logf("cluster, 4 processes × 16 waiters, %v at %d/s: %d slots in the window (want %d, %+.2f %%), schedule on master %s",
		window, rate, got, want, pct(got, want), masterOf(t, c.client(t), "rate:spotflowhttp:{"+t.Name()+"}"))
	checkRate(t, as, time.Second/rate, from, window, want)
}

// clusterCoolDown: a CoolDown on one Limiter holds back another, each with
// its own cluster client.
func clusterCoolDown(t *testing.T, c *testCluster) {
	limit := redis_rate.PerSecond(100)
	a := newLimiter(t, c.client(t), t.Name(), limit, patient)
	b := newLimiter(t, c.client(t), t.Name(), limit, patient)
	start := time.Now()
	a.CoolDown(context.Background(), start.Add(500*time.Millisecond))
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 480*time.Millisecond || d > 900*time.Millisecond {
		t.Errorf("Wait returned after %v, want when the 500 ms cool-down ends", d)
	}
}

// clusterJournal runs the Journal contract with journals whose keys land on
// each master in turn.
func clusterJournal(t *testing.T, c *testCluster) {
	cc := c.client(t)
	names := namesOnEveryMaster(t, cc, 12, "cluster-journal", journalSet)
	next := 0
	journaltest.Run(t, func(t *testing.T) spotflowhttp.Journal {
		if next == len(names) {
			t.Fatal("more journals asked for than names chosen")
		}
		name := names[next]
		next++
		j, err := redislimit.NewJournal(cc, name)
		if err != nil {
			t.Fatal(err)
		}
		return j
	})
}

// clusterJournalReplicas: with WithReplicas(1, …), Record succeeds while
// the replica of the master owning the entry's slot is up, and fails, with
// nothing left of the entry, while that replica is frozen, although the
// other masters' replicas are up: WAIT was asked of the right master, after
// the write, on the connection that wrote it. On every master.
func clusterJournalReplicas(t *testing.T, c *testCluster) {
	cc := c.client(t)
	ctx := context.Background()
	for _, name := range namesOnEveryMaster(t, cc, 3, "cluster-replicas", journalSet) {
		master := masterOf(t, cc, journalSet(name))
		// Patient while the replica is up (a loaded machine can take a
		// while to acknowledge), brief while it is frozen.
		patientJ, err := redislimit.NewJournal(cc, name, redislimit.WithReplicas(1, 3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		j, err := redislimit.NewJournal(cc, name, redislimit.WithReplicas(1, 300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if err := patientJ.Record(ctx, journaltest.Sample("up", 0)); err != nil {
			t.Errorf("master %s: Record with its replica up: %v", master, err)
		}
		replica := c.replicaOf[master]
		if err := replica.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		err = j.Record(ctx, journaltest.Sample("frozen", time.Second))
		if err := replica.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if err == nil {
			t.Errorf("master %s: Record succeeded with its replica frozen", master)
		} else {
			t.Logf("master %s, replica frozen: %v", master, err)
		}
		es, err := j.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || es[0].Key != "up" {
			t.Errorf("master %s: Pending = %d entries (%v), want only the one its replica acknowledged", master, len(es), keysOf(es))
		}
	}
}

func keysOf(es []spotflowhttp.Entry) []string {
	var ks []string
	for _, e := range es {
		ks = append(ks, e.Key)
	}
	return ks
}

// clusterDedup runs the webhook.Dedup contract with stores whose keys land
// on each master in turn.
func clusterDedup(t *testing.T, c *testCluster) {
	cc := c.client(t)
	names := namesOnEveryMaster(t, cc, 6, "cluster-dedup", func(name string) string {
		return "spotflowhttp:{" + name + "}:webhook:msg_a"
	})
	next := 0
	deduptest.Run(t, func(t *testing.T) webhook.Dedup {
		if next == len(names) {
			t.Fatal("more stores asked for than names chosen")
		}
		d, err := redislimit.NewWebhookDedup(cc, names[next])
		next++
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}
