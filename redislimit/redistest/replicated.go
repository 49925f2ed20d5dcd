package redistest

import (
	"fmt"
	"net"
)

// StartReplicated starts a primary and n replicas of it, each a Server
// started with extra (see Start), and returns once every replica is in sync
// with the primary (at most 20 s). If anything fails, the servers already
// started are killed. There is no Sentinel: to fail over, a test kills the
// primary and promotes a replica with Promote, as Sentinel or a managed
// Redis would.
func StartReplicated(n int, extra ...string) (primary *Server, replicas []*Server, err error) {
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
	host, port, _ := net.SplitHostPort(primary.Addr())
	for range n {
		r, err := Start(append([]string{"--replicaof", host, port}, extra...)...)
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
	return primary, replicas, nil
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
