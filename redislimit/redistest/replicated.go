package redistest

import (
	"fmt"
	"net"
	"time"
)

// StartReplicated starts a primary and n replicas of it, each a Server
// started with extra (see Start), and returns once every replica is in sync
// with the primary (at most 20 s). If anything fails, the servers already
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
