package roles

import (
	"errors"
	"time"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Account deletion (docs/protocol.md, "Account deletion"): the user's
// posts first, each as the delete command deletes it, then the account
// and every per-user key in one script that also announces the deletion
// on the user's channel ('x'), which closes the user's other sessions on
// every node with 4007, then the user's reports of others' posts. Until that script ran the account is whole (a
// failure before it leaves a login possible and a retry finishing the
// work); after it, nothing of the user is left to log in with.
func (ss *session) deleteAccount(req *wire.Request) error {
	pwd, err := req.Str("password")
	if err != nil {
		return err
	}
	// Each attempt costs a password check and, when it passes, a script
	// per post: a small burst, then one per deleteAccountEvery.
	if !allowLazy(&ss.delLim, float64(time.Second)/float64(deleteAccountEvery), deleteAccountBurst) {
		return wire.Errorf(wire.RateLimited, "too many account deletions; slow down")
	}
	srv, user := ss.srv, ss.user
	d := srv.digest(pwd)
	// From here the deletion's announcement does not close this session:
	// it closes after its ack (AccountDeleted).
	ss.deleting.Store(true)
	defer ss.deleting.Store(false)
	st, err := srv.broker.AccountCheck(ss.ctx, user, d)
	if err != nil {
		return unavailable(err)
	}
	if st == broker.AccountWrongPassword {
		ss.logger().Info("account deletion refused: wrong password", zap.String("user", user))
		return wire.Errorf(wire.BadCredentials, "wrong password; nothing was deleted")
	}
	// AccountGone: deleted already (an earlier attempt whose reply was
	// lost, or another connection of the user): what is left is posts a
	// publish racing that deletion may have stored.
	if err := ss.deletePostsOf(user); err != nil {
		return err
	}
	if st == broker.AccountOK {
		r, err := srv.broker.DeleteAccount(ss.ctx, user, d)
		if err != nil {
			// The script is one step: done or not. When not, the
			// account is whole and a retry (or a login) finds it so.
			return unavailable(err)
		}
		if r == broker.AccountWrongPassword {
			// No command changes a password: only a store edited by hand.
			return wire.Errorf(wire.BadCredentials, "wrong password; nothing was deleted")
		}
		if r == broker.AccountOK {
			srv.m.accountsDeleted.Inc()
			ss.logger().Info("account deleted", zap.String("user", user))
		}
		// A publish of another connection of the user (closed by the
		// script's announcement) may have stored a post after the first
		// pass: a second pass takes it. Its failure only leaves such a
		// post to its expiry; the account is gone either way.
		if srv.posts != nil {
			if _, err := srv.posts.DeleteAllOf(ss.ctx, user); err != nil {
				ss.logger().Warn("a post stored during an account deletion was not deleted", zap.String("user", user), zap.Error(err))
			}
		}
	}
	// The user's reports of others' posts (reporter id, reason, text) go
	// too. After the account, so that a failure here leaves a retry that
	// finds the account gone (AccountGone) and finishes this.
	if _, err := srv.broker.ForgetReporter(ss.ctx, user); err != nil {
		ss.logger().Info("account deletion stopped at the user's reports", zap.String("user", user), zap.Error(err))
		return unavailable(err)
	}
	// The snapshots kept of the user's reported posts that the user
	// deleted (broker/reports.go "Evidence kept") go too, with their
	// reports: a deleted account's data goes, evidence included.
	if _, err := srv.broker.EraseEvidenceOf(ss.ctx, user); err != nil {
		ss.logger().Info("account deletion stopped at the snapshots of the user's deleted posts", zap.String("user", user), zap.Error(err))
		return unavailable(err)
	}
	ss.accountGone.Store(true)
	ss.Send([]byte(`{"cmd":"delete_account_ack","result":"ok"}`))
	// The reader closes the session after the ack is written (shutdown
	// lets queued frames go first).
	return &closeError{code: wire.CloseAccountDeleted, reason: wire.CloseReason(wire.CloseAccountDeleted), ok: true}
}

// deletePostsOf deletes user's posts through the posts service; a failure
// part-way leaves the rest for a retry.
func (ss *session) deletePostsOf(user string) error {
	if ss.srv.posts == nil {
		return nil
	}
	n, err := ss.srv.posts.DeleteAllOf(ss.ctx, user)
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			return we // posts not loaded yet: unavailable
		}
		ss.logger().Info("account deletion stopped part-way through the posts", zap.String("user", user), zap.Int("deleted", n))
		return unavailable(err)
	}
	return nil
}

// AccountDeleted is presence.Ender: the user's account was deleted (on
// any node). Called from the subscriber's reader: it must not block.
func (ss *session) AccountDeleted() {
	if ss.accountGone.Swap(true) {
		return // told already, or the deleting session after its ack
	}
	if ss.gen.Load() == 0 || ss.deleting.Load() {
		// A login not checked yet finds no account, or meets the flag
		// once it has its generation (login); the deleting session
		// closes after its ack.
		return
	}
	go ss.shutdown(wire.CloseAccountDeleted, wire.CloseReason(wire.CloseAccountDeleted))
}

const (
	deleteAccountEvery = 10 * time.Second
	deleteAccountBurst = 3
)
