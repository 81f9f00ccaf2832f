package roles

import (
	"context"
	"strconv"
	"testing"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap/zaptest"
)

// A login whose script fails with a Redis error answers unavailable and
// leaves the connection open: the client may log in again on it. Nothing
// of the failed attempt may carry over: not a kick it got while attached
// (a newer login of that user: another user's login must not weigh its
// generation), not its user (the cooling-off key, the shutdown's
// requeue), not its "failed" state (which makes a kick answer with a
// release of its own).
func TestLoginRetryAfterRedisErrorStartsClean(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Role = "db"
	cfg.Redis.Addrs = []string{broker.Embedded}
	cfg.RegisterRate, cfg.RegisterPerDay, cfg.RegisterNodeRate = 0, 0, 0
	cfg.ReadRateBytes, cfg.ReadRateFrames, cfg.AbuseLimit = 0, 0, 0
	srv, err := New(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	<-srv.broker.Connected()
	now := cfg.Clock().UnixMilli()
	x, err := srv.broker.CreateUser(ctx, srv.digest("password-of-x"), now)
	if err != nil {
		t.Fatal(err)
	}
	y, err := srv.broker.CreateUser(ctx, srv.digest("password-of-y"), now)
	if err != nil {
		t.Fatal(err)
	}
	// x's login script fails inside Redis, after the password check.
	if err := srv.broker.RawHSet(ctx, x, "gen", "not a number"); err != nil {
		t.Fatal(err)
	}
	ss := &session{srv: srv, ctx: ctx, remote: "192.0.2.1:1000", leave: make(chan struct{})}
	ss.out = newOutbox(func([][]byte) error { return nil }, func() {}, 100, 1<<20, 64, 0)
	ss.setStatus(statusAnonymous)
	req := func(user, pwd string) *wire.Request {
		r, err := wire.ParseRequest([]byte(`{"cmd":"login","user":` + strconv.Quote(user) + `,"password":` + strconv.Quote(pwd) + `}`))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	err = ss.login(req(x, "password-of-x"))
	if we := wire.AsError(err); err == nil || we.Reason != wire.Unavailable {
		t.Fatalf("first login: %v, want unavailable", err)
	}
	// A newer login of x reached the attempt before it detached (the
	// hub's route took its peers before the detach).
	ss.Kick(1 << 40)
	if k := ss.coolOffKey(); k == "u:"+x {
		t.Fatalf("after the failed login the session still counts as %s (cooling-off key %q)", x, k)
	}

	// Another user on this connection: the late kick's generation is
	// x's, so that login is refused, before anything is attached.
	err = ss.login(req(y, "password-of-y"))
	if we := wire.AsError(err); err == nil || we.Reason != wire.BadRequest {
		t.Fatalf("login as %s after the failed one as %s: %v, want bad_request", y, x, err)
	}
	if ss.attached || ss.user != "" || ss.status() != statusAnonymous {
		t.Fatalf("refused login left attached %v, user %q, status %v", ss.attached, ss.user, ss.status())
	}

	// x again, Redis well: the failed attempt's kick and failure are
	// not this one's.
	if err := srv.broker.RawHSet(ctx, x, "gen", "1"); err != nil {
		t.Fatal(err)
	}
	if err := ss.login(req(x, "password-of-x")); err != nil {
		t.Fatalf("second login, as %s: %v", x, err)
	}
	if ss.status() != statusActive || ss.user != x {
		t.Fatalf("second login: status %v, user %q; want active as %s", ss.status(), ss.user, x)
	}
	// (Its own kick may have reached it: kickedBy at most its generation.)
	if ss.loginFailed.Load() || ss.kickedBy.Load() > ss.gen.Load() {
		t.Fatalf("second login kept the failed one's state: failed %v, kicked by %d", ss.loginFailed.Load(), ss.kickedBy.Load())
	}
	srv.hub.Detach(ctx, x, ss)
	if m := ss.mailbox(); m != nil {
		m.Close(ctx)
	}
	ss.out.stop()
}
