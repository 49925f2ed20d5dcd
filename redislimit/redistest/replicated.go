package redistest

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// StartReplicated starts a primary and n replicas of it, each a Server
// started with extra (see Start), and returns once every replica is in sync
// with the primary and receiving its writes: every replica has its link up,
// and has acknowledged a write made on the primary after that (at most
// 20 s in all; the write is deleted again, so that the dataset is empty). If anything fails, the servers already
// started are killed. There is no Sentinel: to fail over, a test kills the
// primary and promotes a replica with Promote, as Sentinel or a managed
// Redis would.
//
// With lag above 0, each replica reaches the primary through a proxy that
// delivers every byte, both ways, lag after it was sent, as a replica in
// another zone does; when the primary dies, what the proxy has in flight is
// lost with it. The replica's Kill closes its proxy.
func StartReplicated(n int, lag time.Duration, extra ...string) (primary *Server, replicas []*Server, err error) {
	primary, err = Start(extra...)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			primary.Kill()
			for _, r := range replicas {
				r.Kill()
			}
			replicas = nil
		}
	}()
	for range n {
		r, err := startReplica(primary.addr, lag, extra)
		if err != nil {
			return nil, nil, err
		}
		replicas = append(replicas, r)
	}
	for _, r := range replicas {
		if err := until(waitFor, "replica "+r.Addr()+" in sync", func() error {
			return linkUp(r.addr)
		}); err != nil {
			return nil, nil, err
		}
	}
	if err := until(waitFor, "replicas of "+primary.addr+" receiving its writes", func() error {
		return replicasAck(primary.addr, n, syncKey)
	}); err != nil {
		return nil, nil, err
	}
	return primary, replicas, nil
}

// syncKey is the key replicasAck writes, and deletes at once.
const syncKey = "redistest:in-sync"

// replicasAck returns nil if n replicas of the primary at addr acknowledge,
// within a second, a write made on it now: key set and deleted again.
//
// A replica's link being up is not enough. After a full sync without disk
// (Redis's default since 7.0), the primary sends a replica the writes it
// has buffered for it, and every later one, only once it has both seen its
// RDB child exit and received a REPLCONF ACK from the replica. The replica
// sends one as soon as it has loaded the data, with its link up; if that
// ACK comes before the primary has seen the child exit, which on a loaded
// machine it does, the primary waits for the next, which the replica sends
// a second later. In that second the replica reports its link up and
// receives nothing: a primary killed then loses every write since the
// sync, which is what the failover tests saw. Measured on two shared
// cores, starting pairs without lag in two processes at once while two
// more did the same with this check: a write made as StartReplicated
// returned reached the replica a second later for 80 of 200 pairs
// without the check, for none of 200 with it.
func replicasAck(addr string, n int, key string) error {
	replies, err := doAll(addr, []string{"SET", key, "1"}, []string{"DEL", key}, []string{"WAIT", strconv.Itoa(n), "1000"})
	if err != nil {
		return err
	}
	if got, err := strconv.Atoi(replies[2]); err != nil || got < n {
		return fmt.Errorf("%s of %d replicas acknowledged a write within a second", replies[2], n)
	}
	return nil
}

// linkUp returns nil once the replica at addr has its link to its primary
// up, which it reports once the first full sync has been loaded.
func linkUp(addr string) error {
	info, err := do(addr, "INFO", "replication")
	if err != nil {
		return err
	}
	if st := field(info, "master_link_status"); st != "up" {
		return fmt.Errorf("master_link_status %q", st)
	}
	return nil
}

// Promote makes the server, a replica, a primary that accepts writes, with
// REPLICAOF NO ONE: what Sentinel or a managed Redis does to the replica it
// chose once the primary is gone. It keeps what the replica had received.
func (s *Server) Promote() error {
	if _, err := s.Do("REPLICAOF", "NO", "ONE"); err != nil {
		return err
	}
	return until(waitFor, s.addr+" promoted", func() error {
		info, err := s.Do("INFO", "replication")
		if err != nil {
			return err
		}
		if role := field(info, "role"); role != "master" {
			return fmt.Errorf("role %q", role)
		}
		return nil
	})
}

// startReplica starts a replica of the primary at addr, through a lagLink
// if lag is above 0.
func startReplica(addr string, lag time.Duration, extra []string) (*Server, error) {
	var link *lagLink
	if lag > 0 {
		var err error
		if link, err = newLagLink(addr, lag); err != nil {
			return nil, err
		}
		addr = link.Addr()
	}
	host, port, _ := net.SplitHostPort(addr)
	r, err := Start(append([]string{"--replicaof", host, port}, extra...)...)
	if err != nil {
		if link != nil {
			link.Close()
		}
		return nil, err
	}
	r.mu.Lock()
	r.link = link
	r.mu.Unlock()
	return r, nil
}
