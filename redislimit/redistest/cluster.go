package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Cluster is a Redis Cluster of servers on loopback ports.
type Cluster struct {
	masters  int
	replicas int
	nodes    []*Server
}

// StartCluster starts a Redis Cluster of masters masters, each with
// replicas replicas, created with "redis-cli --cluster create", and returns
// once every node reports cluster_state:ok and every master has its
// replicas in sync (at most 20 s). Redis Cluster needs at least three
// masters. Each node is a Server with "--cluster-enabled yes" and its nodes
// file in its own temporary directory, on a port whose cluster bus port
// (port + 10000) was free too. If anything fails, the nodes already started
// are killed. Its error matches ErrNoServer or ErrNoCLI when a binary is
// missing.
func StartCluster(masters, replicas int) (c *Cluster, err error) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		return nil, ErrNoCLI
	}
	if masters < 3 || replicas < 0 {
		return nil, fmt.Errorf("redistest: a cluster of %d masters with %d replicas each: Redis Cluster needs at least 3 masters", masters, replicas)
	}
	c = &Cluster{masters: masters, replicas: replicas}
	defer func() {
		if err != nil {
			c.Kill()
		}
	}()
	for range masters * (1 + replicas) {
		s, err := startOn(true, []string{"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, s)
	}
	if err := c.create(); err != nil {
		return nil, err
	}
	for _, s := range c.nodes {
		if err := until(waitFor, "cluster_state:ok on "+s.addr, func() error { return clusterOK(s.addr, len(c.nodes)) }); err != nil {
			return nil, err
		}
	}
	return c, c.waitReplicas()
}

// create runs redis-cli --cluster create over the nodes; redis-cli chooses
// which become masters.
func (c *Cluster) create() error {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(c.replicas), "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redistest: redis-cli --cluster create: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// clusterOK returns nil once the node at addr reports the cluster ok, with
// every slot assigned and every node known.
func clusterOK(addr string, nodes int) error {
	info, err := do(addr, "CLUSTER", "INFO")
	if err != nil {
		return err
	}
	if st := field(info, "cluster_state"); st != "ok" {
		return fmt.Errorf("cluster_state %q", st)
	}
	if n := field(info, "cluster_slots_assigned"); n != "16384" {
		return fmt.Errorf("cluster_slots_assigned %s", n)
	}
	if n := field(info, "cluster_known_nodes"); n != strconv.Itoa(nodes) {
		return fmt.Errorf("cluster_known_nodes %s, want %d", n, nodes)
	}
	return nil
}

// waitReplicas returns nil once every master has its replicas connected
// and receiving its writes (see replicasAck), and every replica its link
// up.
func (c *Cluster) waitReplicas() error {
	if c.replicas == 0 {
		return nil
	}
	for _, s := range c.nodes {
		err := until(waitFor, "replication on "+s.addr, func() error {
			info, err := do(s.addr, "INFO", "replication")
			if err != nil {
				return err
			}
			if field(info, "role") == "slave" {
				return linkUp(s.addr)
			}
			if n := field(info, "connected_slaves"); n != strconv.Itoa(c.replicas) {
				return fmt.Errorf("connected_slaves %s, want %d", n, c.replicas)
			}
			return masterReplicasAck(s.addr, c.replicas)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// masterReplicasAck is replicasAck for the cluster master at addr, with a
// key of one of its slots: it tries syncKey:0, syncKey:1, … until the
// master does not answer MOVED, at most 64 (a master of three holds a
// third of the slots).
func masterReplicasAck(addr string, n int) error {
	for i := range 64 {
		err := replicasAck(addr, n, syncKey+":"+strconv.Itoa(i))
		if err == nil || !strings.Contains(err.Error(), "MOVED") {
			return err
		}
	}
	return fmt.Errorf("no key of the 64 tried is in a slot of %s", addr)
}

// Addrs returns every node's host:port; a cluster client needs only some
// of them to find the others.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.addr
	}
	return addrs
}

// Nodes returns the cluster's servers, in the order of Addrs.
func (c *Cluster) Nodes() []*Server { return append([]*Server(nil), c.nodes...) }

// Kill ends every node at once, as Server.Kill does, and removes their
// nodes files.
func (c *Cluster) Kill() {
	for _, s := range c.nodes {
		s.Kill()
	}
}
