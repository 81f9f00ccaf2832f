package roles_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/occase/occase/broker"
	"github.com/occase/occase/broker/brokertest"
	"github.com/occase/occase/images"
	"github.com/occase/occase/posts"
	"github.com/occase/occase/roles"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

const (
	secretA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	secretB = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
)

func hexKey(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		panic("bad test key " + s)
	}
	return b
}

// get answers the status and body of a GET.
func get(t testing.TB, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond (an HTTP-level condition) until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricText reads one unlabelled series from /metrics ("" when absent).
func metricText(t testing.TB, base, name string) string {
	t.Helper()
	_, body := get(t, base+"/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

func postsCount(t testing.TB, base string) int {
	t.Helper()
	code, body := get(t, base+"/api/posts?count=1")
	if code != http.StatusOK {
		t.Fatalf("GET /api/posts?count=1: %d %s", code, body)
	}
	var c struct{ Count int }
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	return c.Count
}

func withPosts(c *roles.Config) {
	c.Posts.Menu = posts.DemoMenu()
	c.Posts.QuotaN = 100
	c.Secret = hexKey(secretA)
}

// A node started while Redis is down starts (it used to exit), serves
// what needs no Redis, is not ready and takes no WebSocket; once Redis is
// back it loads the posts index and only then says ready, with every
// stored post there; chat then works.
func TestNodeStartsWhileRedisIsDownAndIsReadyOnlyWithItsIndex(t *testing.T) {
	r := brokertest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: time.Second}
	n0 := startNode(t, opt, withPosts)
	a := register(t, n0.url)
	epoch := a.epoch
	if epoch == "" {
		t.Fatal("register_ack carries no epoch")
	}
	const stored = 7
	for range stored {
		a.send(publishFrame("[0,0,0]", "[0,0,0]"))
		if m := a.expect("publish_ack"); m.str("result") != "ok" {
			t.Fatalf("publish: %v", m)
		}
	}
	n0.stop()
	r.Stop()

	n := startNode(t, opt, withPosts)
	base := n.base
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis never reached: %d %s", code, body)
	}
	for _, p := range []string{"/healthz", "/api/menu", "/"} {
		if code, _ := get(t, base+p); code != http.StatusOK {
			t.Fatalf("GET %s while Redis is down: %d", p, code)
		}
	}
	// The push key pair lives in Redis: not there yet, answered at once.
	if code, _ := get(t, base+"/api/push/vapid-public-key"); code != http.StatusServiceUnavailable {
		t.Fatalf("VAPID key while Redis was never reached: %d, want 503", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, _, err := websocket.Dial(ctx, n.url, nil); err == nil {
		c.CloseNow()
		t.Fatal("a WebSocket was accepted before the node could serve it")
	}

	r.Restart() // with its data (AOF)
	waitFor(t, "/readyz 200 after Redis came back", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK
	})
	waitFor(t, "the VAPID key once Redis answers", func() bool {
		code, _ := get(t, base+"/api/push/vapid-public-key")
		return code == http.StatusOK
	})
	// Ready means the index is there: never an empty answer first.
	if got := postsCount(t, base); got != stored {
		t.Fatalf("ready with %d posts in the index, want %d", got, stored)
	}
	if v := metricText(t, base, "occase_posts_index_loaded"); v != "1" {
		t.Fatalf("occase_posts_index_loaded %q", v)
	}
	b := register(t, n.url)
	if b.epoch != epoch {
		t.Fatalf("epoch %q after a restart that kept the data, want %q", b.epoch, epoch)
	}
	c := register(t, n.url)
	b.chat(c.id, "after the outage", 1)
	b.expectServerAck(1, c.id)
	c.expectChat(b.id, "after the outage")
}

// A Redis outage leaves /readyz 200 (every node failing it at once took
// the whole site off the load balancer), while /readyz?deep=1 and
// occase_redis_up say Redis is down. Redis restarted without persistence
// lost the data: the epoch changes, is counted, and new acks carry it.
func TestReadyThroughRedisOutageAndEpochChange(t *testing.T) {
	r := brokertest.StartRedis(t)
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: time.Second}
	n := startNode(t, opt, withPosts)
	base := n.base
	a := register(t, n.url)
	waitFor(t, "the deep check to pass with Redis up", func() bool {
		code, _ := get(t, base+"/readyz?deep=1")
		return code == http.StatusOK
	})
	r.Stop()
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz during a Redis outage: %d %s", code, body)
	}
	if code, _ := get(t, base+"/readyz?deep=1"); code != http.StatusServiceUnavailable {
		t.Fatalf("deep check during a Redis outage: %d", code)
	}
	if v := metricText(t, base, "occase_redis_up"); v != "0" {
		t.Fatalf("occase_redis_up %q during the outage", v)
	}
	r.Restart() // empty: no persistence
	waitFor(t, "the epoch change to be seen", func() bool {
		return metricText(t, base, "occase_data_epoch_changes_total") == "1"
	})
	if v := metricText(t, base, "occase_redis_up"); v != "1" {
		t.Fatalf("occase_redis_up %q after the outage", v)
	}
	b := register(t, n.url)
	if b.epoch == "" || b.epoch == a.epoch {
		t.Fatalf("epoch %q after the data was lost, was %q", b.epoch, a.epoch)
	}
	l := login(t, n.url, b.id, b.pwd)
	// One more round trip: the login has finished (its mailbox started)
	// before the test ends and closes the node.
	l.send(`{"cmd":"subscribe"}`)
	l.expect("subscribe_ack")
}

// Nodes sharing a Redis must share their keys: another --secret (or
// --image-key) is refused at start with one clear error, and, found
// after a start while Redis was down, stops the node from Run.
func TestMismatchedKeysRefused(t *testing.T) {
	r := brokertest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	opt := broker.Options{Addrs: []string{r.Addr}, Prefix: brokertest.Prefix(), Timeout: time.Second}
	n1 := startNode(t, opt, func(c *roles.Config) {
		c.Secret = hexKey(secretA)
		c.ImageKey = hexKey(secretA)
	})
	cfg := roles.DefaultConfig()
	cfg.Role, cfg.Redis = "db", opt
	cfg.Secret, cfg.ImageKey = hexKey(secretB), hexKey(secretA)
	if _, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), "--secret") {
		t.Fatalf("another --secret: %v", err)
	}
	cfg.Secret, cfg.ImageKey = hexKey(secretA), hexKey(secretB)
	if _, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), "--image-key") {
		t.Fatalf("another --image-key: %v", err)
	}
	// No --secret where the peers have one: the error names the missing
	// flag (it said "--secret is not the one ..." of a flag never given).
	cfg.Secret, cfg.ImageKey = nil, hexKey(secretA)
	if _, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), "no --secret given") {
		t.Fatalf("no --secret: %v", err)
	}
	// The same keys start.
	cfg.Secret, cfg.ImageKey = hexKey(secretA), hexKey(secretA)
	startNode(t, opt, func(c *roles.Config) { *c = cfg })

	n1.stop()
	r.Stop()
	cfg.Secret = hexKey(secretB)
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New while Redis is down: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	r.Restart()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "--secret") {
			t.Fatalf("Serve returned %v, want the --secret mismatch", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the node kept running with another --secret")
	}
}

// Role db never falls back to the in-memory server: it needs --redis, or
// the embedded server asked for by name.
func TestRoleDBNeedsRedis(t *testing.T) {
	cfg := roles.DefaultConfig()
	cfg.Role = "db"
	if _, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t)); err == nil || !strings.Contains(err.Error(), "--redis") {
		t.Fatalf("role db without --redis: %v", err)
	}
	cfg.Redis.Addrs = []string{broker.Embedded}
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
}

// A failure after the broker opened (here the posts service refusing a
// menu of another depth) releases everything New started: the goroutines
// end and the embedded server's port is closed. Close is idempotent and
// safe concurrently.
func TestNewReleasesOnFailureAndCloseIsIdempotent(t *testing.T) {
	base := runtime.NumGoroutine()
	core, logs := observer.New(zap.WarnLevel)
	cfg := roles.DefaultConfig()
	cfg.Role = "all"
	cfg.ImageDir = t.TempDir()
	m := *posts.DemoMenu()
	m.Locations.Depth = 2
	cfg.Posts.Menu = &m
	if _, err := roles.New(context.Background(), cfg, zap.New(core)); err == nil {
		t.Fatal("New accepted a menu of another depth")
	}
	var addr string
	for _, e := range logs.All() {
		if a, ok := e.ContextMap()["addr"].(string); ok {
			addr = a
		}
	}
	if addr == "" {
		t.Fatal("the embedded server's address was not logged")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the embedded server still listens on %s", addr)
	}
	waitFor(t, "the goroutines New started to end", func() bool { return runtime.NumGoroutine() <= base })

	cfg.Posts.Menu = nil
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Close()
		}()
	}
	wg.Wait()
	srv.Close()
	waitFor(t, "the goroutines of a closed node to end", func() bool { return runtime.NumGoroutine() <= base })
}

// An idle keep-alive connection is closed after the HTTP idle timeout
// (it used to be held forever).
func TestIdleKeepAliveClosed(t *testing.T) {
	cfg := roles.DefaultConfig()
	cfg.Role = "all"
	cfg.Redis.Addrs = []string{broker.Embedded}
	cfg.ImageDir = t.TempDir()
	cfg.HTTPIdleTimeout = 200 * time.Millisecond
	srv, err := roles.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	defer func() { cancel(); <-done }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection: read gave %v, want EOF (closed by the server)", err)
	}
}

// An img node, which has no Redis to compare keys with, exports its key's
// fingerprint and warns, with a count, about uploads refused for a bad
// signature (what another --image-key looks like).
func TestImgNodeWarnsAboutBadSignatures(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	cfg := roles.DefaultConfig()
	cfg.Role = "img"
	cfg.ImageDir = t.TempDir()
	cfg.ImageKey = hexKey(secretA)
	cfg.KeyWarnEvery = 20 * time.Millisecond
	srv, err := roles.New(context.Background(), cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	other, err := images.NewSigner(hexKey(secretB))
	if err != nil {
		t.Fatal(err)
	}
	names, err := other.Names(2)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if code, _ := httpDo(t, http.MethodPost, ts.URL+"/"+n+".jpg", []byte("x")); code != http.StatusForbidden {
			t.Fatalf("upload signed with another key: %d, want 403", code)
		}
	}
	waitFor(t, "the bad-signature warning", func() bool {
		for _, e := range logs.All() {
			if strings.Contains(e.Message, "bad signature") && e.ContextMap()["count"] == int64(2) {
				return true
			}
		}
		return false
	})
	_, body := httpDo(t, http.MethodGet, ts.URL+"/metrics", nil)
	if want := `image_key="` + broker.Fingerprint(hexKey(secretA)) + `"`; !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %s", want)
	}
}
