// Package brokertest starts the Redis servers that integration tests run
// against: a real redis-server process on a free loopback port, the
// embedded in-process server, a three-master Redis Cluster, and a master
// with replicas under a Sentinel. Every integration test runs on the first
// two; the broker's tests and the end-to-end tests also on the others.
package brokertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/redis/rueidis"
	"go.uber.org/zap/zaptest"
)

// Redis is a redis-server child process on a loopback port.
type Redis struct {
	Addr string
	port int
	dir  string
	args []string
	conf string // a Sentinel's config file; empty for a server
	cmd  *exec.Cmd
	t    testing.TB
}

// StartRedis starts redis-server on a free loopback port and stops it when
// the test ends. It fails the test when redis-server is not installed: the
// README's test command installs it.
func StartRedis(t testing.TB, extraArgs ...string) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (apt-get install redis-server, or run .ci/run): %v", err)
	}
	cluster := slices.Contains(extraArgs, "--cluster-enabled")
	r := &Redis{dir: t.TempDir(), t: t}
	// A port drawn free can be taken before redis-server binds it (by
	// another test package's process): then it exits, and other ports are
	// drawn.
	for attempt := 1; ; attempt++ {
		r.args = extraArgs
		if cluster {
			// The cluster bus defaults to port+10000, which is out of range
			// for free ports above 55535 (Redis then refuses to start) and
			// may be taken: give it a free port of its own.
			r.args = append(slices.Clone(extraArgs), "--cluster-port", strconv.Itoa(freePort(t)))
		}
		r.port = freePort(t)
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		err := r.tryStart()
		if err == nil {
			break
		}
		if !errors.Is(err, errExited) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("%v; drawing another port", err)
	}
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) start() {
	r.t.Helper()
	if err := r.tryStart(); err != nil {
		r.t.Fatal(err)
	}
}

// errExited: redis-server ended before it was ready (most often its port,
// drawn free a moment before, was taken meanwhile by another test's
// process).
var errExited = errors.New("redis-server exited before it was ready")

// readyWait bounds how long a redis-server may take to be ready: on a
// loaded 2-core CI machine a cluster node took over 10 s once.
const readyWait = 30 * time.Second

// tryStart starts the server and waits until it is ready; an error wraps
// errExited when the process ended first, with its last lines.
func (r *Redis) tryStart() error {
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--daemonize", "no",
		"--protected-mode", "no"}, r.args...)
	if r.conf != "" {
		args = []string{r.conf, "--sentinel"}
	}
	cmd := exec.Command("redis-server", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.cmd = cmd
	ready := make(chan struct{})
	ended := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		var tail []string
		for sc.Scan() {
			// A Sentinel never says it is ready; it is once it monitors.
			line := sc.Text()
			if !signalled && (strings.Contains(line, "Ready to accept connections") || strings.Contains(line, "+monitor master")) {
				close(ready)
				signalled = true
			}
			if !signalled {
				tail = append(tail[max(len(tail)-4, 0):], line)
			}
		}
		ended <- tail
	}()
	select {
	case <-ready:
		return nil
	case tail := <-ended:
		r.Stop()
		return fmt.Errorf("redis-server on %s: %w: %s", r.Addr, errExited, strings.Join(tail, " | "))
	case <-time.After(readyWait):
		r.Stop()
		return fmt.Errorf("redis-server on %s did not become ready in %s", r.Addr, readyWait)
	}
}

// Stop kills the server (as a crash would). Safe to call twice.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// Restart kills the server and starts it again on the same port and
// directory: empty, unless it was started with persistence (for example
// "--appendonly", "yes", "--appendfsync", "always").
func (r *Redis) Restart() {
	r.Stop()
	r.start()
}

func freePort(t testing.TB) int {
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

// FreeAddr returns a loopback address ("127.0.0.1:port") that nothing
// listens on, for a process the test starts. The port is drawn at random
// below the kernel's ephemeral range: a port of that range (what listening
// on port 0 hands out) may be handed out again, before the test's process
// binds it, to another test package's listener or as an outgoing
// connection's source port. CI met it: the node exited with "bind:
// address already in use" and the test talked to another package's node.
func FreeAddr(t testing.TB) string {
	low := ephemeralLow()
	for range 200 {
		if low <= minTestPort+1000 {
			break // no room below the range: the kernel's choice
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(minTestPort+rand.IntN(low-minTestPort))))
		if err != nil {
			continue // in use: draw again
		}
		l.Close()
		return l.Addr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// minTestPort: ports below it are left to services of the machine.
const minTestPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux;
// 32768, its default, elsewhere).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

var prefixes atomic.Int64

// Prefix returns a key prefix unique in this process, so tests sharing a
// server never see each other's keys.
func Prefix() string {
	return fmt.Sprintf("t%d_%d:", os.Getpid(), prefixes.Add(1))
}

// Backend names one of the servers a test runs against.
type Backend struct {
	Name string
	// Options for broker.Open: the address of the real server, or of an
	// embedded server started for this test and shared by all its nodes.
	Options broker.Options
	// Redis is the real server (nil for embedded and cluster).
	Redis *Redis
	// Cluster is the Redis Cluster (nil unless Name is "cluster").
	Cluster *Cluster
}

// Each runs fn as a subtest against a real redis-server and against the
// embedded server.
func Each(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Run("redis", func(t *testing.T) {
		r := StartRedis(t)
		fn(t, Backend{Name: "redis", Options: broker.Options{Addrs: []string{r.Addr}, Prefix: Prefix()}, Redis: r})
	})
	t.Run("embedded", func(t *testing.T) {
		m, err := broker.StartEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		fn(t, Backend{Name: "embedded", Options: broker.Options{Addrs: []string{m.Addr()}, Prefix: Prefix()}})
	})
}

// EachWithCluster runs fn like Each, and also against a three-master Redis
// Cluster. The broker's own tests use it; feature tests that only need the
// broker's contract stay on Each, and the end-to-end tests run the cluster
// separately, so the suite does not start a cluster per test.
func EachWithCluster(t *testing.T, fn func(t *testing.T, b Backend)) {
	Each(t, fn)
	t.Run("cluster", func(t *testing.T) {
		c := StartCluster(t)
		fn(t, Backend{Name: "cluster", Options: broker.Options{Addrs: c.Addrs, Prefix: Prefix(), Cluster: true}, Cluster: c})
	})
}

// ACLUser adds a Redis user, password "pw", allowed every command and
// channel but only the keys that match patterns (ACL "~" patterns), as a
// real server's ACL may be set: for tests of a write that fails in one
// slot while the rest succeeds.
func (r *Redis) ACLUser(t testing.TB, name string, patterns ...string) {
	t.Helper()
	args := []string{"ACL", "SETUSER", name, "on", ">pw", "+@all", "&*"}
	for _, p := range patterns {
		args = append(args, "~"+p)
	}
	mustOK(t, r.CLI(t, args...))
}

// Limited is ACLUser, then a client of prefix logged in as that user.
func (r *Redis) Limited(t testing.TB, prefix, name string, patterns ...string) *broker.Client {
	t.Helper()
	r.ACLUser(t, name, patterns...)
	return Open(t, broker.Options{Addrs: []string{r.Addr}, Prefix: prefix, Username: name, Password: "pw"})
}

// Raw is a plain client of the servers at addrs, closed when the test
// ends: for tests that write what the broker never would (a key of the
// wrong type, an older layout) or read what it keeps to itself.
func Raw(t testing.TB, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Open connects to b, closing the client when the test ends.
func Open(t testing.TB, opt broker.Options) *broker.Client {
	t.Helper()
	c, err := broker.Open(context.Background(), opt, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
