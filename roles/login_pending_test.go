package roles

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap/zaptest"
)

// testSession is a session with no socket: what it writes is kept.
type testSession struct {
	*session
	mu      sync.Mutex
	written [][]byte
}

func newTestSession(t *testing.T, srv *Server) *testSession {
	ts := &testSession{}
	ts.session = &session{srv: srv, ctx: context.Background(), remote: "192.0.2.1:1000", leave: make(chan struct{})}
	ts.out = newOutbox(func(frames [][]byte) error {
		ts.mu.Lock()
		for _, f := range frames {
			ts.written = append(ts.written, bytes.Clone(f))
		}
		ts.mu.Unlock()
		return nil
	}, func() {}, 100, 1<<20, 64, 0)
	ts.setStatus(statusAnonymous)
	t.Cleanup(func() {
		if ts.attached {
			srv.hub.Detach(context.Background(), ts.user, ts.session)
		}
		if m := ts.mailbox(); m != nil {
			m.Close(context.Background())
		}
		ts.out.stop()
	})
	return ts
}

func (ts *testSession) wrote(sub string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, f := range ts.written {
		if bytes.Contains(f, []byte(sub)) {
			return true
		}
	}
	return false
}

func testRequest(t *testing.T, frame string) *wire.Request {
	r, err := wire.ParseRequest([]byte(frame))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func embeddedServer(t *testing.T) *Server {
	cfg := DefaultConfig()
	cfg.Role = "db"
	cfg.Redis.Addrs = []string{broker.Embedded}
	cfg.RegisterRate, cfg.RegisterPerDay, cfg.RegisterNodeRate = 0, 0, 0
	cfg.ReadRateBytes, cfg.ReadRateFrames, cfg.AbuseLimit = 0, 0, 0
	cfg.ChatRate, cfg.PresenceRate = 0, 0
	srv, err := New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	<-srv.broker.Connected()
	return srv
}

func (ts *testSession) loginAs(t *testing.T, user, pwd string) {
	t.Helper()
	if err := ts.login(testRequest(t, `{"cmd":"login","user":`+strconv.Quote(user)+`,"password":`+strconv.Quote(pwd)+`}`)); err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
}

// A login is attached to its user before its script checks the password.
// Meanwhile it must not stand for the user on this node: a chat message
// or a presence frame to the user goes to the logged-in session (here, or
// through Redis to wherever it is), not to the attempt, which drops it.
func TestPendingLoginDoesNotShadowTheUser(t *testing.T) {
	srv := embeddedServer(t)
	ctx := context.Background()
	now := srv.cfg.Clock().UnixMilli()
	x, _ := srv.broker.CreateUser(ctx, srv.digest("password-of-x"), now)
	y, _ := srv.broker.CreateUser(ctx, srv.digest("password-of-y"), now)

	sx := newTestSession(t, srv)
	sx.loginAs(t, x, "password-of-x")
	sy := newTestSession(t, srv)
	sy.loginAs(t, y, "password-of-y")

	// An attempt at x with any password, in its script's round trip:
	// attached, its mailbox held, its generation not known.
	w := newTestSession(t, srv)
	w.user = x
	w.holdMailbox()
	if _, err := srv.hub.Attach(ctx, x, w.session); err != nil {
		t.Fatal(err)
	}
	w.attached = true

	if err := sy.message(testRequest(t, `{"cmd":"message","type":"chat","to":"`+x+`","msg":"for x only","id":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := sy.presence(testRequest(t, `{"cmd":"presence","to":"`+x+`","type":"typing"}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !(sx.wrote("for x only") && sx.wrote("typing")) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !sx.wrote("for x only") {
		t.Error("the logged-in session of x did not get the message sent while a login of x was pending")
	}
	if !sx.wrote("typing") {
		t.Error("the logged-in session of x did not get the presence frame sent while a login of x was pending")
	}
	if w.wrote("for x only") || w.wrote("typing") {
		t.Error("the pending login wrote what was sent to x")
	}
}
