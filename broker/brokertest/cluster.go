package brokertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of redis-server child processes on loopback
// ports: three masters, no replicas, every slot assigned.
type Cluster struct {
	Nodes []*Redis
	// Addrs are the seed addresses to give broker.Options.
	Addrs []string
}

// StartCluster starts a three-master Redis Cluster with redis-cli --cluster
// create and waits until every node reports cluster_state:ok and knows
// every master. Everything stops when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	// A node that misses pings for the node timeout is marked failing; on
	// a loaded CI machine a short timeout would flap.
	return startCluster(t, 0, 5000)
}

// StartClusterWithReplicas starts three masters with one replica each; a
// replica takes over after its master has been unreachable for
// nodeTimeoutMs.
func StartClusterWithReplicas(t testing.TB, nodeTimeoutMs int) *Cluster {
	t.Helper()
	return startCluster(t, 1, nodeTimeoutMs)
}

func startCluster(t testing.TB, replicas, nodeTimeoutMs int) *Cluster {
	t.Helper()
	needRedisCLI(t)
	c := &Cluster{}
	for i := 0; i < 3*(1+replicas); i++ {
		r := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(nodeTimeoutMs))
		c.Nodes = append(c.Nodes, r)
		c.Addrs = append(c.Addrs, r.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK(t)
	if replicas > 0 {
		Poll(t, 30*time.Second, "every replica in sync", func() bool {
			online := 0
			for _, n := range c.Nodes {
				online += strings.Count(n.CLI(t, "INFO", "replication"), "state=online")
			}
			return online == 3*replicas
		})
	}
	return c
}

// WaitOK waits until every running node says cluster_state:ok and lists
// three masters serving slots.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	Poll(t, 30*time.Second, "cluster_state:ok on every node", func() bool {
		for _, n := range c.Nodes {
			if n.cmd == nil {
				continue
			}
			if !strings.Contains(n.CLI(t, "CLUSTER", "INFO"), "cluster_state:ok") {
				return false
			}
			nodes := n.CLI(t, "CLUSTER", "NODES")
			if strings.Count(nodes, "master") < 3 || strings.Count(nodes, " connected") < c.running() {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) live(t testing.TB) *Redis {
	for _, r := range c.Nodes {
		if r.cmd != nil {
			return r
		}
	}
	t.Fatal("no cluster node is running")
	return nil
}

func (c *Cluster) running() int {
	n := 0
	for _, r := range c.Nodes {
		if r.cmd != nil {
			n++
		}
	}
	return n
}

// Owner returns the node serving key's slot.
func (c *Cluster) Owner(t testing.TB, key string) *Redis {
	t.Helper()
	s, _ := strconv.Atoi(strings.TrimSpace(c.live(t).CLI(t, "CLUSTER", "KEYSLOT", key)))
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		for _, line := range strings.Split(n.CLI(t, "CLUSTER", "NODES"), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.Contains(f[2], "myself") {
				continue
			}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, _ := strconv.Atoi(lo)
				b, _ := strconv.Atoi(hi)
				if a <= s && s <= b {
					return n
				}
			}
		}
	}
	t.Fatalf("no node serves the slot of %s", key)
	return nil
}

// ID is the node's cluster node id.
func (r *Redis) ID(t testing.TB) string {
	t.Helper()
	return strings.TrimSpace(r.CLI(t, "CLUSTER", "MYID"))
}

// MoveSlot migrates the slot of key, with its keys, from its owner to node
// to, the way redis-cli --cluster reshard does it, and waits until every
// node agrees.
func (c *Cluster) MoveSlot(t testing.TB, key string, to *Redis) {
	t.Helper()
	from := c.Owner(t, key)
	if from == to {
		t.Fatalf("the slot of %s is already on %s", key, to.Addr)
	}
	slot := strings.TrimSpace(to.CLI(t, "CLUSTER", "KEYSLOT", key))
	mustOK(t, to.CLI(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", from.ID(t)))
	mustOK(t, from.CLI(t, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.ID(t)))
	for {
		keys := strings.Fields(from.CLI(t, "CLUSTER", "GETKEYSINSLOT", slot, "100"))
		if len(keys) == 0 {
			break
		}
		args := append([]string{"MIGRATE", "127.0.0.1", strconv.Itoa(to.port), "", "0", "5000", "KEYS"}, keys...)
		mustOK(t, from.CLI(t, args...))
	}
	for _, n := range []*Redis{to, from} {
		mustOK(t, n.CLI(t, "CLUSTER", "SETSLOT", slot, "NODE", to.ID(t)))
	}
	for _, n := range c.Nodes {
		if n != to && n != from {
			mustOK(t, n.CLI(t, "CLUSTER", "SETSLOT", slot, "NODE", to.ID(t)))
		}
	}
	Poll(t, 10*time.Second, "every node sees the slot moved", func() bool {
		for _, n := range c.Nodes {
			if c.ownerSeenBy(t, n, key) != to.ID(t) {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) ownerSeenBy(t testing.TB, n *Redis, key string) string {
	out := n.CLI(t, "CLUSTER", "KEYSLOT", key)
	s, _ := strconv.Atoi(strings.TrimSpace(out))
	for _, line := range strings.Split(n.CLI(t, "CLUSTER", "NODES"), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			if a <= s && s <= b {
				return f[0]
			}
		}
	}
	return ""
}

func mustOK(t testing.TB, out string) {
	t.Helper()
	if s := strings.TrimSpace(out); s != "OK" && s != "NOKEY" {
		t.Fatalf("redis answered %q, want OK", s)
	}
}

// CLI runs redis-cli against the server and returns its raw output.
func (r *Redis) CLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(r.port)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v on %s: %v\n%s", args, r.Addr, err, out)
	}
	return string(out)
}

func needRedisCLI(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is not installed (apt-get install redis-server, or run .ci/run): %v", err)
	}
}

// Poll calls cond until it holds, failing the test after d.
func Poll(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sentinel is a Redis master with replicas and one Sentinel watching them,
// all redis-server child processes on loopback ports.
type Sentinel struct {
	Master   *Redis
	Replicas []*Redis
	// Addr is the Sentinel's address and Name the master set's name, for
	// broker.Options.Sentinels and MasterName.
	Addr string
	Name string
	s    *Redis
}

// StartSentinel starts a master, replicas replicas of it, and a Sentinel
// that fails over after the master has been unreachable for one second.
// It returns once the Sentinel knows the master and every replica.
func StartSentinel(t testing.TB, replicas int) *Sentinel {
	t.Helper()
	needRedisCLI(t)
	s := &Sentinel{Name: "occase", Master: StartRedis(t)}
	mport := strconv.Itoa(s.Master.port)
	for i := 0; i < replicas; i++ {
		s.Replicas = append(s.Replicas, StartRedis(t, "--replicaof", "127.0.0.1", mport))
	}
	Poll(t, 20*time.Second, "replicas in sync", func() bool {
		return strings.Count(s.Master.CLI(t, "INFO", "replication"), "state=online") == replicas
	})
	// Debian's redis-server package ships no redis-sentinel binary, but
	// redis-server runs as one with --sentinel and a writable config file.
	port := freePort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
dir %s
sentinel monitor %s 127.0.0.1 %s 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 2
`, port, dir, s.Name, mport, s.Name, s.Name, s.Name)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s.s = &Redis{port: port, dir: dir, t: t, conf: conf}
	s.s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Addr = s.s.Addr
	s.s.start()
	t.Cleanup(s.s.Stop)
	Poll(t, 20*time.Second, "the sentinel to know every replica", func() bool {
		out := s.s.CLI(t, "SENTINEL", "REPLICAS", s.Name)
		return strings.Count(out, "slave-priority") >= replicas || strings.Count(out, "replica-priority") >= replicas
	})
	return s
}

// MasterAddr is the master's address as the Sentinel reports it.
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	f := strings.Fields(s.s.CLI(t, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Name))
	if len(f) != 2 {
		return ""
	}
	return net.JoinHostPort(f[0], f[1])
}

// KillMaster kills the master process (as a crash would) and waits until
// the Sentinel has promoted a replica. It returns the new master.
func (s *Sentinel) KillMaster(t testing.TB) *Redis {
	t.Helper()
	old := s.Master
	old.Stop()
	Poll(t, 30*time.Second, "the sentinel to promote a replica", func() bool {
		return s.MasterAddr(t) != old.Addr
	})
	addr := s.MasterAddr(t)
	for i, r := range s.Replicas {
		if r.Addr == addr {
			s.Master = r
			s.Replicas = append(append(s.Replicas[:i:i], s.Replicas[i+1:]...), old)
			return r
		}
	}
	t.Fatalf("the sentinel promoted %s, which is none of the replicas", addr)
	return nil
}
