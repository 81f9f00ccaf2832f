package main

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker/brokertest"
)

// Scale-out tests: db nodes as separate processes on a Redis Cluster and
// on a Sentinel-watched master, with faults in the middle of a chat stream.

// expectFrame reads the next frame and checks its cmd.
func (w *wsClient) expectFrame(cmd string) map[string]any {
	w.t.Helper()
	m, err := w.recv(10 * time.Second)
	if err != nil {
		w.t.Fatalf("waiting for %s: %v", cmd, err)
	}
	if m["cmd"] != cmd {
		w.t.Fatalf("got %v, want cmd %s", m, cmd)
	}
	return m
}

func (w *wsClient) chatTo(to, text string, id int) {
	w.t.Helper()
	if err := w.send(fmt.Sprintf(`{"cmd":"message","type":"chat","to":%q,"msg":%q,"id":%d,"post_id":17,"is_sender_post":false}`, to, text, id)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsClient) expectAck(id int, to string) {
	w.t.Helper()
	m := w.expectFrame("message")
	if m["type"] != "server_ack" || m["result"] != "ok" || num(m["ack_id"]) != int64(id) || m["from"] != to ||
		num(m["post_id"]) != 17 || m["is_sender_post"] != true {
		w.t.Fatalf("server_ack %v, want ok ack_id %d from %s", m, id, to)
	}
}

// expectChats reads chat lines from `from` with the given texts, in order,
// with increasing msg_ids.
func (w *wsClient) expectChats(from string, texts ...string) {
	w.t.Helper()
	var last int64
	for _, text := range texts {
		m := w.expectFrame("message")
		if m["type"] != "chat" || m["from"] != from || m["msg"] != text {
			w.t.Fatalf("got %v, want chat %q from %s", m, text, from)
		}
		id := num(m["msg_id"])
		if id <= last {
			w.t.Fatalf("msg_id %d after %d", id, last)
		}
		last = id
	}
}

// readyStatus reads the deep readiness check, which follows Redis and the
// pub/sub subscription: these tests watch a failover through it. (Plain
// /readyz stays 200 through a Redis outage; TestReadyThroughRedisOutage.)
func readyStatus(addr string) int {
	resp, err := http.Get("http://" + addr + "/readyz?deep=1")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady polls a node's /readyz until it answers want.
func waitReady(t *testing.T, n *proc, want int, d time.Duration) {
	t.Helper()
	brokertest.Poll(t, d, fmt.Sprintf("/readyz of %s to answer %d", n.addr, want), func() bool {
		return readyStatus(n.addr) == want
	})
}

// stream is a chat stream from one sender to one receiver: the sender sends
// a message, waits for its reply, and sends the next; the receiver's frames
// are collected with duplicates dropped by msg_id.
type stream struct {
	t      *testing.T
	s      *wsClient
	to     string
	stopAt atomic.Int64 // the sender stops before this message number
	sent   atomic.Int64

	mu     sync.Mutex
	acked  map[int]bool
	failed int
	done   chan error

	got    map[int64]string // msg_id -> text
	byText map[string]int
	idOf   map[string]int64
}

// startStream starts the sender; it goes on until extend tells it when to
// stop.
func startStream(t *testing.T, s *wsClient, to string) *stream {
	st := &stream{t: t, s: s, to: to, acked: map[int]bool{}, done: make(chan error, 1),
		got: map[int64]string{}, byText: map[string]int{}, idOf: map[string]int64{}}
	st.stopAt.Store(1 << 62)
	go func() { st.done <- st.send() }()
	return st
}

func (st *stream) send() error {
	for i := 0; int64(i) < st.stopAt.Load(); i++ {
		if err := st.s.send(fmt.Sprintf(`{"cmd":"message","type":"chat","to":%q,"msg":"m%d","id":%d}`, st.to, i, i)); err != nil {
			return fmt.Errorf("send m%d: %w", i, err)
		}
		m, err := st.s.recv(20 * time.Second)
		if err != nil {
			return fmt.Errorf("reply to m%d: %w", i, err)
		}
		if m["type"] != "server_ack" || num(m["ack_id"]) != int64(i) {
			return fmt.Errorf("reply to m%d: %v", i, m)
		}
		st.mu.Lock()
		if m["result"] == "ok" {
			st.acked[i] = true
		} else if m["reason"] == "unavailable" {
			st.failed++
			// As a client should, back off before trying again while
			// the service is unavailable.
			st.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			st.mu.Lock()
		} else {
			st.mu.Unlock()
			return fmt.Errorf("reply to m%d: %v", i, m)
		}
		st.mu.Unlock()
		st.sent.Store(int64(i + 1))
	}
	return nil
}

// extend makes the sender stop after n more messages.
func (st *stream) extend(n int) {
	st.stopAt.Store(st.sent.Load() + int64(n))
}

func (st *stream) take(m map[string]any) {
	if m["cmd"] != "message" || m["type"] != "chat" {
		return
	}
	id := num(m["msg_id"])
	if _, dup := st.got[id]; dup {
		return
	}
	txt, _ := m["msg"].(string)
	st.got[id] = txt
	st.byText[txt]++
	st.idOf[txt] = id
}

// feed reads a connection on a goroutine of its own, so that a test can
// wait for frames with a deadline without closing the connection (a read
// whose context expires closes it).
type feed struct {
	frames chan map[string]any
	err    error // set before frames is closed
}

func follow(r *wsClient) *feed {
	f := &feed{frames: make(chan map[string]any, 1<<16)}
	go func() {
		defer close(f.frames)
		for {
			m, err := r.recv(2 * time.Minute)
			if err != nil {
				f.err = err
				return
			}
			f.frames <- m
		}
	}()
	return f
}

// next returns the next frame, or nil and the error that ended the
// connection, or nil and a timeout error after d.
func (f *feed) next(d time.Duration) (map[string]any, error) {
	select {
	case m, ok := <-f.frames:
		if !ok {
			return nil, f.err
		}
		return m, nil
	case <-time.After(d):
		return nil, errors.New("no frame within " + d.String())
	}
}

// readUntil reads f until n distinct messages have arrived.
func (st *stream) readUntil(f *feed, n int) {
	st.t.Helper()
	for len(st.got) < n {
		m, err := f.next(20 * time.Second)
		if err != nil {
			st.t.Fatalf("reading the stream (have %d of %d): %v", len(st.got), n, err)
		}
		st.take(m)
	}
}

// drain reads f until its connection ends and returns the error that
// ended it.
func (st *stream) drain(f *feed) error {
	st.t.Helper()
	for {
		m, err := f.next(20 * time.Second)
		if m == nil {
			if err != nil && f.err == nil {
				st.t.Fatalf("the connection did not end: %v", err)
			}
			return err
		}
		st.take(m)
	}
}

// finish waits for the sender, reads f until every acknowledged message
// has arrived, and checks: each acknowledged message exactly once after
// dropping duplicates by msg_id, none twice, msg_ids in send order.
func (st *stream) finish(f *feed) {
	st.t.Helper()
	if err := <-st.done; err != nil {
		st.t.Fatal(err)
	}
	st.mu.Lock()
	acked, failed, sent := st.acked, st.failed, int(st.sent.Load())
	st.mu.Unlock()
	missing := func() int {
		n := 0
		for i := range acked {
			if st.byText["m"+strconv.Itoa(i)] == 0 {
				n++
			}
		}
		return n
	}
	for missing() > 0 {
		m, err := f.next(20 * time.Second)
		if err != nil {
			st.t.Fatalf("%d acknowledged messages never arrived (%d sent, %d acked, %d failed as unavailable): %v",
				missing(), sent, len(acked), failed, err)
		}
		st.take(m)
	}
	// Every message was answered; take whatever unacknowledged ones are
	// still on their way, to check they are not doubled either.
	for {
		m, err := f.next(300 * time.Millisecond)
		if err != nil {
			break
		}
		st.take(m)
	}
	var prev int64
	for i := 0; i < sent; i++ {
		txt := "m" + strconv.Itoa(i)
		if st.byText[txt] > 1 {
			st.t.Fatalf("%s delivered %d times with different msg_ids", txt, st.byText[txt])
		}
		if st.byText[txt] == 0 {
			continue
		}
		if id := st.idOf[txt]; id <= prev {
			st.t.Fatalf("%s has msg_id %d after %d", txt, id, prev)
		} else {
			prev = id
		}
	}
	if len(st.got) != len(st.byText) {
		st.t.Fatalf("%d distinct msg_ids for %d distinct texts", len(st.got), len(st.byText))
	}
	st.t.Logf("%d sent, %d acknowledged, %d failed as unavailable, %d delivered", sent, len(acked), failed, len(st.got))
}

// Three db nodes on a three-master Redis Cluster: the chat of
// roles.TestChatSameNodeOfflineAndAcrossNodes across the nodes, then a db
// node killed with SIGKILL and one stopped with SIGTERM in the middle of a
// chat stream.
func TestCluster(t *testing.T) {
	cl := brokertest.StartCluster(t)
	args := []string{"--role=db", "--redis", strings.Join(cl.Addrs, ","), "--redis-cluster",
		"--secret", testSecret, "--chat-queue-cap", "100000", "--redis-timeout", "2s"}

	t.Run("chat", func(t *testing.T) {
		n1, n2, n3 := startProc(t, args...), startProc(t, args...), startProc(t, args...)
		a := wsDial(t, n1.addr)
		a.register()
		b := wsDial(t, n1.addr)
		b.register()
		// Same node.
		a.chatTo(b.id, "hi", 1)
		a.expectAck(1, b.id)
		b.expectChats(a.id, "hi")

		// Offline: c registers on n2 and leaves; c logs in on n3 and gets
		// a's three messages after login_ack, oldest first.
		c := wsDial(t, n2.addr)
		c.register()
		c.c.Close(websocket.StatusNormalClosure, "")
		for i := 1; i <= 3; i++ {
			a.chatTo(c.id, fmt.Sprint("off", i), 10+i)
			a.expectAck(10+i, c.id)
		}
		c3 := wsDial(t, n3.addr)
		c3.login(c.id, c.pw)
		c3.expectChats(a.id, "off1", "off2", "off3")

		// Across nodes: d on n2 gets 50 messages from a on n1 live, in
		// order, and answers with a receipt.
		d := wsDial(t, n2.addr)
		d.register()
		var texts []string
		for i := 0; i < 50; i++ {
			a.chatTo(d.id, fmt.Sprint("x", i), 100+i)
			texts = append(texts, fmt.Sprint("x", i))
		}
		for i := 0; i < 50; i++ {
			a.expectAck(100+i, d.id)
		}
		d.expectChats(a.id, texts...)
		d.send(`{"cmd":"message","type":"app_ack_read","to":"` + a.id + `","post_id":17,"is_sender_post":true}`)
		d.expectFrame("message")
		if m := a.expectFrame("message"); m["type"] != "app_ack_read" || m["from"] != d.id {
			t.Fatalf("receipt %v", m)
		}
		// Presence from n3 to a user on n2, through the user's sharded
		// channel.
		c3.send(`{"cmd":"presence","to":"` + d.id + `","type":"writing","post_id":17}`)
		if m := d.expectFrame("presence"); m["from"] != c.id || m["type"] != "writing" {
			t.Fatalf("presence %v", m)
		}
		// Unknown recipient.
		a.send(`{"cmd":"message","to":"987654","id":99}`)
		if m := a.expectFrame("message"); m["result"] != "fail" || m["reason"] != "not_found" {
			t.Fatalf("to unknown user: %v", m)
		}
		// A newer login on another node displaces the older one.
		d2 := wsDial(t, n3.addr)
		d2.login(d.id, d.pw)
		if _, err := d.recv(10 * time.Second); websocket.CloseStatus(err) != 4001 {
			t.Fatalf("older login ended with %v, want close 4001", err)
		}
		a.chatTo(d.id, "latest", 200)
		a.expectAck(200, d.id)
		d2.expectChats(a.id, "latest")
	})

	// Posts on the cluster: the {posts} keys sit in one slot and the
	// broadcast channel is plain pub/sub, reaching every node.
	t.Run("posts", func(t *testing.T) {
		n1, n2, n3 := startProc(t, args...), startProc(t, args...), startProc(t, args...)
		a := wsDial(t, n1.addr)
		a.register()
		c := wsDial(t, n3.addr)
		c.register()
		c.send(`{"cmd":"subscribe","channels":[[],[]],"any_of_features":0,"last_post_id":0,"ranges":[]}`)
		c.expectFrame("subscribe_ack")
		a.send(`{"cmd":"publish","items":[{"body":"{\"msg\":\"Golf, 2016\"}","to":[[[0,0,0]],[[0,0,0]]],"features":4,"range_values":[27000,2016,150000]}]}`)
		ack := a.expectFrame("publish_ack")
		id := num(ack["id"])
		if ack["result"] != "ok" || id < 1 {
			t.Fatalf("publish_ack %v", ack)
		}
		postID := func(m map[string]any) int64 {
			its, _ := m["items"].([]any)
			if len(its) != 1 {
				t.Fatalf("post frame %v", m)
			}
			return num(its[0].(map[string]any)["id"])
		}
		if got := postID(c.expectFrame("post")); got != id {
			t.Fatalf("subscriber on n3 got post %d, want %d", got, id)
		}
		// A late subscriber on n2 gets it as catch-up; after the author
		// deletes it, a new one on n2 does not.
		d := wsDial(t, n2.addr)
		d.register()
		d.send(`{"cmd":"subscribe","last_post_id":0}`)
		d.expectFrame("subscribe_ack")
		if got := postID(d.expectFrame("post")); got != id {
			t.Fatalf("catch-up on n2: %d, want %d", got, id)
		}
		a.send(fmt.Sprintf(`{"cmd":"delete","id":%d}`, id))
		if m := a.expectFrame("delete_ack"); m["result"] != "ok" {
			t.Fatalf("delete: %v", m)
		}
		a.send(`{"cmd":"publish","items":[{"body":"{}","to":[[[0,0,0]],[[0,0,1]]],"features":4,"range_values":[1,2,3]}]}`)
		id2 := num(a.expectFrame("publish_ack")["id"])
		if got := postID(c.expectFrame("post")); got != id2 {
			t.Fatalf("second post on n3: %d, want %d", got, id2)
		}
		// The deletion and the new post travel the same channel: once d
		// on n2 has the new post, n2 has dropped the deleted one.
		if got := postID(d.expectFrame("post")); got != id2 {
			t.Fatalf("second post on n2: %d, want %d", got, id2)
		}
		e := wsDial(t, n2.addr)
		e.register()
		e.send(`{"cmd":"subscribe","last_post_id":0}`)
		e.expectFrame("subscribe_ack")
		if got := postID(e.expectFrame("post")); got != id2 {
			t.Fatalf("catch-up after the delete: %d, want only %d", got, id2)
		}
	})

	// The receiver's node is killed with SIGKILL mid-stream; the receiver
	// logs in again on another node.
	t.Run("kill db node", func(t *testing.T) {
		n1, n2, n3 := startProc(t, args...), startProc(t, args...), startProc(t, args...)
		r := wsDial(t, n1.addr)
		r.register()
		s := wsDial(t, n3.addr)
		s.register()
		st := startStream(t, s, r.id)
		f := follow(r)
		st.readUntil(f, 200)
		if err := n1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		st.drain(f)
		r2 := wsDial(t, n2.addr)
		r2.login(r.id, r.pw)
		st.extend(100)
		st.finish(follow(r2))
	})

	// The receiver's node drains on SIGTERM mid-stream: the receiver's
	// connection closes with 1001 after the node hands back what it held,
	// the node exits 0, and the receiver logs in again on another node.
	t.Run("sigterm db node", func(t *testing.T) {
		n1, n2, n3 := startProc(t, args...), startProc(t, args...), startProc(t, args...)
		r := wsDial(t, n1.addr)
		r.register()
		s := wsDial(t, n3.addr)
		s.register()
		st := startStream(t, s, r.id)
		f := follow(r)
		st.readUntil(f, 200)
		if err := n1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := st.drain(f); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("receiver's connection ended with %v, want 1001", err)
		}
		if err := n1.cmd.Wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		r2 := wsDial(t, n2.addr)
		r2.login(r.id, r.pw)
		st.extend(100)
		st.finish(follow(r2))
	})
}

// Two db nodes on a master with two replicas under Sentinel, acknowledging
// chat messages only once a replica has them. The master is killed in the
// middle of a chat stream: /readyz?deep=1 goes 503 on both nodes, Sentinel
// promotes a replica, the nodes follow it, subscribe again and answer 200;
// the receiver's connection stays up and gets every acknowledged message
// exactly once; messages sent during the failover fail as unavailable.
func TestSentinelFailoverMidStream(t *testing.T) {
	sn := brokertest.StartSentinel(t, 2)
	args := []string{"--role=db", "--redis-sentinel", sn.Addr, "--redis-master", sn.Name,
		"--redis-wait-replicas", "1", "--redis-timeout", "1s",
		"--secret", testSecret, "--chat-queue-cap", "100000"}
	n1, n2 := startProc(t, args...), startProc(t, args...)
	r := wsDial(t, n1.addr)
	r.register()
	s := wsDial(t, n2.addr)
	s.register()
	st := startStream(t, s, r.id)
	// The feed reads on while the master dies, so the receiver never
	// looks like a slow consumer.
	f := follow(r)
	st.readUntil(f, 200)
	sn.Master.Stop()
	waitReady(t, n1, http.StatusServiceUnavailable, 10*time.Second)
	waitReady(t, n2, http.StatusServiceUnavailable, 10*time.Second)
	sn.KillMaster(t) // the master is down already; this waits for the promotion
	waitReady(t, n1, http.StatusOK, 30*time.Second)
	waitReady(t, n2, http.StatusOK, 30*time.Second)
	st.extend(200)
	st.finish(f)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.acked[int(st.sent.Load())-1] {
		t.Fatal("the last message, sent after the failover, was not acknowledged")
	}
}

// Three db nodes on a Redis Cluster with a replica per master,
// acknowledging chat messages once a replica has them. The master serving
// the receiver's slot is killed mid-stream: /readyz?deep=1 goes 503, the replica
// takes over, the nodes subscribe the sharded channels again on it and
// answer 200; the old master comes back as a replica; the receiver's
// connection stays up and gets every acknowledged message exactly once.
func TestClusterFailoverMidStream(t *testing.T) {
	cl := brokertest.StartClusterWithReplicas(t, 2000)
	args := []string{"--role=db", "--redis", strings.Join(cl.Addrs, ","), "--redis-cluster",
		"--redis-wait-replicas", "1", "--redis-timeout", "1s",
		"--secret", testSecret, "--chat-queue-cap", "100000"}
	n1, n2, n3 := startProc(t, args...), startProc(t, args...), startProc(t, args...)
	r := wsDial(t, n1.addr)
	r.register()
	s := wsDial(t, n2.addr)
	s.register()
	st := startStream(t, s, r.id)
	f := follow(r)
	st.readUntil(f, 200)
	master := cl.Owner(t, "occase:c:{"+r.id+"}")
	master.Stop()
	for _, n := range []*proc{n1, n2, n3} {
		waitReady(t, n, http.StatusServiceUnavailable, 10*time.Second)
	}
	for _, n := range []*proc{n1, n2, n3} {
		waitReady(t, n, http.StatusOK, 30*time.Second)
	}
	promoted := cl.Owner(t, "occase:c:{"+r.id+"}")
	if promoted == master {
		t.Fatal("the dead master still serves the receiver's slot")
	}
	// The promoted replica has no replica of its own, so acknowledged
	// (replicated) stores fail as unavailable until the old master is back
	// and has rejoined as its replica.
	master.Restart()
	brokertest.Poll(t, 30*time.Second, "the old master to rejoin as a replica", func() bool {
		return strings.Contains(promoted.CLI(t, "INFO", "replication"), "state=online")
	})
	st.extend(200)
	st.finish(f)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.acked[int(st.sent.Load())-1] {
		t.Fatal("the last message, sent after the failover, was not acknowledged")
	}
}
