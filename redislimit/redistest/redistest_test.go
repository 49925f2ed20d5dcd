package redistest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// need skips t where redis-server or redis-cli is missing.
func need(t *testing.T) {
	t.Helper()
	if !Available() {
		t.Skip(ErrNoServer)
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip(ErrNoCLI)
	}
}

// alive reports whether a process with pid runs (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// A cluster of three masters with a replica each is ok on every node,
// each master has its replica, and Kill leaves no process and no nodes
// file behind.
func TestStartCluster(t *testing.T) {
	need(t)
	start := time.Now()
	c, err := StartCluster(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	defer c.Kill()
	masters := 0
	for _, s := range c.Nodes() {
		info, err := s.Do("INFO", "replication")
		if err != nil {
			t.Fatal(err)
		}
		if field(info, "role") == "master" {
			masters++
			if n := field(info, "connected_slaves"); n != "1" {
				t.Errorf("master %s has %s replicas, want 1", s.Addr(), n)
			}
		}
	}
	if masters != 3 {
		t.Errorf("%d masters, want 3", masters)
	}
	var dirs []string
	var pids []int
	for _, s := range c.Nodes() {
		dirs, pids = append(dirs, s.dir), append(pids, s.cmd.Process.Pid)
		if _, err := os.Stat(s.dir + "/nodes.conf"); err != nil {
			t.Errorf("node %s: %v", s.Addr(), err)
		}
	}
	c.Kill()
	for i := range pids {
		if alive(pids[i]) {
			t.Errorf("node %d still runs after Kill", pids[i])
		}
		if _, err := os.Stat(dirs[i]); !os.IsNotExist(err) {
			t.Errorf("%s still there after Kill (%v)", dirs[i], err)
		}
	}
}

// A replica started by StartReplicated has what the primary was given, and
// once the primary is killed and the replica promoted, it takes writes.
func TestStartReplicatedAndPromote(t *testing.T) {
	need(t)
	p, rs, err := StartReplicated(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	defer rs[0].Kill()
	if _, err := doAll(p.addr, []string{"SET", "k", "v"}, []string{"WAIT", "1", "5000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs[0].Do("SET", "k2", "v"); err == nil {
		t.Error("a replica took a write before its promotion")
	}
	p.Kill()
	if err := rs[0].Promote(); err != nil {
		t.Fatal(err)
	}
	if v, err := rs[0].Do("GET", "k"); err != nil || v != "v" {
		t.Errorf("GET k on the promoted replica = %q, %v; want v", v, err)
	}
	if _, err := rs[0].Do("SET", "k2", "v"); err != nil {
		t.Errorf("the promoted replica refused a write: %v", err)
	}
}

// StartReplicated's check that a replica receives the primary's writes,
// which a link up does not show (see replicasAck), passes for a replica
// that does, fails within its second for one that is frozen, and leaves
// the dataset empty.
func TestReplicasAckNeedsTheWriteOnTheReplica(t *testing.T) {
	need(t)
	p, rs, err := StartReplicated(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	defer rs[0].Kill()
	if err := replicasAck(p.addr, 1, syncKey); err != nil {
		t.Fatalf("replica up: %v", err)
	}
	if n, err := rs[0].Do("DBSIZE"); err != nil || n != "0" {
		t.Errorf("DBSIZE on the replica = %q, %v; want 0", n, err)
	}
	if err := rs[0].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = replicasAck(p.addr, 1, syncKey)
	rs[0].Signal(syscall.SIGCONT)
	if err == nil || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Errorf("replica frozen: %v, want 0 of 1 replicas acknowledging", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("replica frozen: the check took %v, want about a second", d)
	}
}

func TestStartClusterNeedsThreeMasters(t *testing.T) {
	need(t)
	if _, err := StartCluster(2, 0); err == nil || !strings.Contains(err.Error(), "at least 3 masters") {
		t.Errorf("StartCluster(2, 0) = %v, want an error saying it needs 3 masters", err)
	}
}

// Through a lagged link, a write reaches the replica lag later, WAIT takes
// a round trip of it, and a write the primary acknowledged just before it
// was killed is lost: the link drops what it had in flight.
func TestReplicaLag(t *testing.T) {
	need(t)
	const lag = 100 * time.Millisecond
	p, rs, err := StartReplicated(1, lag)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	defer rs[0].Kill()
	start := time.Now()
	// WAIT counts the writes of its own connection: SET on the same one.
	replies, err := doAll(p.addr, []string{"SET", "k", "v"}, []string{"WAIT", "1", "5000"})
	if err != nil || replies[1] != "1" {
		t.Fatalf("SET, WAIT = %q, %v", replies, err)
	}
	if d := time.Since(start); d < 2*lag-10*time.Millisecond {
		t.Errorf("WAIT took %v, want a round trip of %v", d, lag)
	}
	if v, _ := rs[0].Do("GET", "k"); v != "v" {
		t.Errorf("GET k on the replica after WAIT = %q, want v", v)
	}
	if _, err := p.Do("SET", "k2", "v"); err != nil {
		t.Fatal(err)
	}
	if v, _ := rs[0].Do("GET", "k2"); v != "" {
		t.Errorf("the replica had the write at once (%q), want it %v later", v, lag)
	}
	p.Kill()
	if err := rs[0].Promote(); err != nil {
		t.Fatal(err)
	}
	if v, _ := rs[0].Do("GET", "k2"); v != "" {
		t.Errorf("the write in flight when the primary died reached the replica (%q)", v)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
