package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
)

// These tests run the real binary as separate processes.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "occase-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "occase")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	out  *bytes.Buffer
	log  *syncBuf // what the node wrote, stdout and stderr
}

// freeAddr is a loopback address for a process the test starts
// (brokertest.FreeAddr: outside the ports the kernel hands out).
func freeAddr(t *testing.T) string { return brokertest.FreeAddr(t) }

type syncBuf struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// text is what was written so far.
func (b *syncBuf) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// startProc runs `occase serve` and waits until it is ready.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{addr: freeAddr(t)}
	out := &syncBuf{}
	p.log = out
	p.cmd = exec.Command(binary(t), append([]string{"serve", "--addr", p.addr, "--log-level", "warn",
		"--chat-rate", "0", "--register-rate", "0", "--register-per-day", "0", "--register-node-rate", "0",
		// Tests pipeline thousands of frames on one connection.
		"--read-rate-bytes", "0", "--read-rate-frames", "0", "--abuse-limit", "0"}, args...)...)
	// Only Write: syncBuf's promoted ReadFrom would bypass its lock.
	w := struct{ io.Writer }{out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("node %s output:\n%s", p.addr, out.text())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && !exited(p.cmd.Process.Pid) {
				return p
			}
		}
		if exited(p.cmd.Process.Pid) {
			// Another process may hold the address and answer /readyz:
			// what answered is not this node.
			t.Fatalf("node on %s exited before it was ready:\n%s", p.addr, out.text())
		}
		if time.Now().After(deadline) {
			t.Fatalf("node on %s not ready", p.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited reports whether the child pid has ended (a zombie not yet
// waited for, or gone), without waiting for it: the test may Wait later.
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return runtime.GOOS == "linux" // no /proc elsewhere: assume running
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

type wsClient struct {
	t         *testing.T
	c         *websocket.Conn
	id        string
	pw        string
	lastEpoch string
}

func wsDial(t *testing.T, addr string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

func (w *wsClient) send(s string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, []byte(s))
}

func (w *wsClient) recv(d time.Duration) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		w.t.Fatalf("non-JSON frame %q", b)
	}
	return m, nil
}

func num(v any) int64 {
	n, _ := v.(json.Number)
	i, _ := n.Int64()
	return i
}

func (w *wsClient) register() {
	w.t.Helper()
	if err := w.send(`{"cmd":"register"}`); err != nil {
		w.t.Fatal(err)
	}
	m, err := w.recv(5 * time.Second)
	if err != nil || m["result"] != "ok" {
		w.t.Fatalf("register: %v %v", m, err)
	}
	w.id, w.pw = m["id"].(string), m["password"].(string)
	w.lastEpoch, _ = m["epoch"].(string)
}

func (w *wsClient) login(id, pw string) {
	w.t.Helper()
	w.id, w.pw = id, pw
	w.send(`{"cmd":"login","user":"` + id + `","password":"` + pw + `"}`)
	m, err := w.recv(10 * time.Second)
	if err != nil || m["cmd"] != "login_ack" || m["result"] != "ok" {
		w.t.Fatalf("login: %v %v", m, err)
	}
}

// eachBackend runs fn against a real redis-server and against the embedded
// server, which here runs in the test process and is shared by the nodes.
func eachBackend(t *testing.T, fn func(t *testing.T, redisAddr string)) {
	t.Run("redis", func(t *testing.T) { fn(t, brokertest.StartRedis(t).Addr) })
	t.Run("embedded", func(t *testing.T) {
		m, err := broker.StartEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		fn(t, m.Addr())
	})
}

const testSecret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// A node killed with SIGKILL while messages to one of its users are in
// flight: the user, logging in again on the other node, gets every
// acknowledged message exactly once after dropping duplicates by msg_id.
func TestNodeKilledMidStreamLosesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, redisAddr string) {
		// The queue cap (default 1000, oldest dropped) is tested elsewhere;
		// here every message must fit.
		args := []string{"--role=db", "--redis", redisAddr, "--secret", testSecret, "--chat-queue-cap", "10000"}
		n1 := startProc(t, args...)
		n2 := startProc(t, args...)
		r := wsDial(t, n1.addr)
		r.register()
		s := wsDial(t, n2.addr)
		s.register()

		const total = 2000
		acked := map[int64]bool{}
		var ackMu sync.Mutex
		sendDone := make(chan error, 1)
		go func() {
			for i := 0; i < total; i++ {
				if err := s.send(fmt.Sprintf(`{"cmd":"message","type":"chat","to":%q,"msg":"m%d","id":%d}`, r.id, i, i)); err != nil {
					sendDone <- err
					return
				}
			}
			sendDone <- nil
		}()
		ackDone := make(chan error, 1)
		go func() {
			for len(acked) < total {
				m, err := s.recv(20 * time.Second)
				if err != nil {
					ackDone <- err
					return
				}
				if m["type"] == "server_ack" && m["result"] == "ok" {
					ackMu.Lock()
					acked[num(m["ack_id"])] = true
					ackMu.Unlock()
				}
			}
			ackDone <- nil
		}()

		got := map[int64]string{} // msg_id -> text
		byText := map[string]int{}
		take := func(m map[string]any) {
			if m["cmd"] != "message" || m["type"] != "chat" {
				return
			}
			id := num(m["msg_id"])
			if _, dup := got[id]; dup {
				return
			}
			got[id] = m["msg"].(string)
			byText[m["msg"].(string)]++
		}
		// Read some on n1, then kill it in the middle of the stream.
		for len(got) < 300 {
			m, err := r.recv(10 * time.Second)
			if err != nil {
				t.Fatalf("reading on n1: %v", err)
			}
			take(m)
		}
		if err := n1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.recv(5 * time.Second)
			if err != nil {
				break // the socket died with the node
			}
			take(m)
		}
		if err := <-sendDone; err != nil {
			t.Fatal(err)
		}
		if err := <-ackDone; err != nil {
			t.Fatalf("acks: %v (have %d)", err, len(acked))
		}
		r2 := wsDial(t, n2.addr)
		r2.login(r.id, r.pw)
		deadline := time.Now().Add(30 * time.Second)
		for len(got) < total && time.Now().Before(deadline) {
			m, err := r2.recv(10 * time.Second)
			if err != nil {
				break
			}
			take(m)
		}
		for i := 0; i < total; i++ {
			txt := "m" + strconv.Itoa(i)
			if acked[int64(i)] && byText[txt] != 1 {
				t.Fatalf("acknowledged message %s delivered %d times after dedup (have %d of %d)", txt, byText[txt], len(got), total)
			}
		}
		// msg_ids follow the send order.
		var prev int64
		for i := 0; i < total; i++ {
			for id, txt := range got {
				if txt == "m"+strconv.Itoa(i) {
					if id <= prev {
						t.Fatalf("message %s has msg_id %d after %d", txt, id, prev)
					}
					prev = id
				}
			}
		}
	})
}

// SIGTERM drains: connected apps are closed with 1001 and the process exits 0.
func TestSigtermDrains(t *testing.T) {
	eachBackend(t, func(t *testing.T, redisAddr string) {
		n := startProc(t, "--role=db", "--redis", redisAddr, "--secret", testSecret)
		c := wsDial(t, n.addr)
		c.register()
		n.cmd.Process.Signal(syscall.SIGTERM)
		_, err := c.recv(10 * time.Second)
		if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
			t.Fatalf("closed with %v, want 1001", err)
		}
		if err := n.cmd.Wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	})
}

// The embedded default keeps its data across a restart of the real
// binary: a user registered before logs in after, the epoch is the same,
// and the next registration gets a new id, not one handed out before.
func TestEmbeddedSnapshotSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--role=all", "--image-dir", filepath.Join(dir, "images"),
		"--embedded-snapshot", filepath.Join(dir, "embedded.json")}
	n := startProc(t, args...)
	a := wsDial(t, n.addr)
	epoch := registerEpoch(a)
	if epoch == "" {
		t.Fatal("register_ack carries no epoch")
	}
	// An upload name handed out now (no --image-key: the embedded server
	// keeps the key with its data) still works after the restart.
	a.send(`{"cmd":"filenames"}`)
	fm, err := a.recv(10 * time.Second)
	names, _ := fm["names"].([]any)
	if err != nil || fm["cmd"] != "filenames_ack" || len(names) == 0 {
		t.Fatalf("filenames: %v %v", fm, err)
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}

	n2 := startProc(t, args...)
	a2 := wsDial(t, n2.addr)
	a2.send(`{"cmd":"login","user":"` + a.id + `","password":"` + a.pw + `"}`)
	m, err := a2.recv(10 * time.Second)
	if err != nil || m["cmd"] != "login_ack" || m["result"] != "ok" {
		t.Fatalf("login after a restart: %v %v", m, err)
	}
	if m["epoch"] != epoch {
		t.Fatalf("epoch %v after a restart that kept the data, want %q", m["epoch"], epoch)
	}
	b := wsDial(t, n2.addr)
	registerEpoch(b)
	if b.id == a.id {
		t.Fatalf("user id %s handed out again after a restart", b.id)
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 32, 32)), nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+n2.addr+"/"+names[0].(string)+".jpg", "image/jpeg", bytes.NewReader(jpg.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload with a name from before the restart: %d, want 201", resp.StatusCode)
	}
}

func registerEpoch(w *wsClient) string {
	w.t.Helper()
	w.register()
	return w.lastEpoch
}
