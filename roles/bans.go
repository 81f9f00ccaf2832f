package roles

import (
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Banned users (docs/protocol.md "Banned accounts"). An operator's ban
// (occase moderate ban, broker.BanUser) sets a field of the user's hash and
// announces 'b' on the user's channel in one step. A login reads the field
// in its script and is refused with login_ack fail "banned" and close 4008;
// a live session hears the announcement (Banned) and closes with 4008. A
// login whose script ran before the ban was attached to the user's channel
// before it, so it hears the announcement: before it has its generation it
// only marks itself (login then refuses it), after it closes like any live
// session.

// refuseBanned answers a login of a banned user: login_ack fail "banned",
// then the close with 4008 (session_dispatch.go).
func (ss *session) refuseBanned(user string) error {
	ss.srv.m.loginsBanned.Inc()
	ss.logger().Info("login refused: the user is banned", zap.String("user", user))
	return wire.Errorf(wire.Banned, "this account is banned")
}

// Banned is presence.Banner: an operator banned the user (on any node).
// Called from the subscriber's reader: it must not block. The session
// closes as any other does (what it holds goes back to the user's queue:
// the account stays).
func (ss *session) Banned() {
	if ss.banned.Swap(true) {
		return // told already
	}
	if ss.gen.Load() == 0 {
		// A login not checked yet: its script finds the ban, or it meets
		// the flag once it has its generation (login).
		return
	}
	ss.srv.m.sessionsBanned.Inc()
	ss.logger().Info("session closed: the user was banned")
	go ss.shutdown(wire.CloseBanned, wire.CloseReason(wire.CloseBanned))
}
