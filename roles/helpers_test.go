package roles_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/roles"
	"go.uber.org/zap/zaptest"
)

// node is one db-role server serving a loopback listener the way the
// binary does (Serve: the front door, then net/http).
type node struct {
	srv  *roles.Server
	base string // http://host:port
	url  string // the WebSocket endpoint
	halt func() // ends Serve and waits for it
}

func startNode(t testing.TB, opt broker.Options, mut ...func(*roles.Config)) *node {
	t.Helper()
	cfg := roles.DefaultConfig()
	cfg.Role = "db"
	cfg.Redis = opt
	cfg.RegisterRate = 0
	cfg.RegisterPerDay = 0
	cfg.RegisterNodeRate = 0
	cfg.ChatRate = 0
	cfg.PresenceRate = 0
	cfg.ReadRateBytes, cfg.ReadRateFrames, cfg.AbuseLimit = 0, 0, 0
	for _, m := range mut {
		m(&cfg)
	}
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	addr := l.Addr().String()
	n := &node{srv: srv, base: "http://" + addr, url: "ws://" + addr + "/ws",
		halt: sync.OnceFunc(func() { cancel(); <-done })}
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.halt()
	n.srv.Close()
}

// client speaks the protocol over a real WebSocket.
type client struct {
	t     testing.TB
	c     *websocket.Conn
	id    string
	pwd   string
	epoch string
	seen  map[int64]bool // msg_ids received, to drop duplicates
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(1 << 20)
	cl := &client{t: t, c: c, seen: map[int64]bool{}}
	t.Cleanup(func() { c.CloseNow() })
	return cl
}

func (c *client) send(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("write %s: %v", frame, err)
	}
}

type msg map[string]any

func (m msg) str(k string) string {
	s, _ := m[k].(string)
	return s
}

func (m msg) num(k string) int64 {
	n, _ := m[k].(json.Number)
	v, _ := n.Int64()
	return v
}

// recv returns the next frame, failing the test after 5 s.
func (c *client) recv() msg {
	c.t.Helper()
	m, err := c.tryRecv(5 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return m
}

func (c *client) tryRecv(d time.Duration) (msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m msg
	if err := dec.Decode(&m); err != nil {
		c.t.Fatalf("server sent non-JSON %q", b)
	}
	return m, nil
}

// expect returns the next frame and checks its cmd (and type, for messages).
func (c *client) expect(cmd string) msg {
	c.t.Helper()
	m := c.recv()
	if m.str("cmd") != cmd {
		c.t.Fatalf("got %v, want cmd %s", m, cmd)
	}
	return m
}

// closed reads until the connection ends and returns its close code.
func (c *client) closed() websocket.StatusCode {
	c.t.Helper()
	for {
		_, err := c.tryRecv(10 * time.Second)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				c.t.Fatal("the server did not close the connection")
			}
			return websocket.CloseStatus(err)
		}
	}
}

func register(t testing.TB, url string) *client {
	t.Helper()
	c := dial(t, url)
	c.send(`{"cmd":"register"}`)
	m := c.expect("register_ack")
	if m.str("result") != "ok" || m.str("id") == "" || len(m.str("password")) < 10 {
		t.Fatalf("register_ack %v", m)
	}
	c.id, c.pwd, c.epoch = m.str("id"), m.str("password"), m.str("epoch")
	return c
}

func login(t testing.TB, url, id, pwd string) *client {
	t.Helper()
	c := dial(t, url)
	c.id, c.pwd = id, pwd
	c.send(`{"cmd":"login","user":"` + id + `","password":"` + pwd + `"}`)
	m := c.expect("login_ack")
	if m.str("result") != "ok" {
		t.Fatalf("login_ack %v", m)
	}
	return c
}

func (c *client) chat(to, text string, id int) {
	c.send(`{"cmd":"message","type":"chat","to":"` + to + `","msg":"` + text + `","id":` + itoa(id) + `,"post_id":17,"is_sender_post":false}`)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// photoAll configures a role-all node that names and stores photos: the
// test image key, the image store under dir, no filenames rate. More
// settings go after it in startNode's list.
func photoAll(dir string) func(*roles.Config) {
	return func(c *roles.Config) {
		c.Role = "all"
		c.ImageKey = testImageKey
		c.ImageDir = dir
		c.FilenamesRate = 0
	}
}

// photoDB configures a db node that names photos (the test image key, no
// filenames rate) but stores none: the db half of the separate roles.
func photoDB(c *roles.Config) {
	c.Role = "db"
	c.ImageKey = testImageKey
	c.FilenamesRate = 0
}

// photoImg configures an img node with the test image key and its store
// under dir: the img half of the separate roles.
func photoImg(dir string) func(*roles.Config) {
	return func(c *roles.Config) {
		c.Role = "img"
		c.ImageKey = testImageKey
		c.ImageDir = dir
	}
}

// uploadJPG uploads the test JPEG as "<name>.jpg" through the img node at
// base for each of names and returns those paths without the leading
// slash (what a post's "images" member links).
func uploadJPG(t *testing.T, base string, names ...string) []string {
	t.Helper()
	jpg, _ := testPhotos(t)
	var rel []string
	for _, nm := range names {
		p := nm + ".jpg"
		if code, body := httpDo(t, http.MethodPost, base+"/"+p, jpg); code != http.StatusCreated {
			t.Fatalf("POST /%s: %d %s", p, code, body)
		}
		rel = append(rel, p)
	}
	return rel
}
