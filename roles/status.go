package roles

// status is where a session is in its life. It only moves forward:
//
//	connecting -> anonymous -> active -> leaving -> closed
//	connecting, anonymous -> leaving
//
// One field, changed only by setStatus, checked before every request is
// dispatched (centrifugal/centrifuge's client status), so that states
// like "logged in but leaving" cannot be half true: once a session is
// leaving, nothing it reads is acted on.
type status int32

const (
	statusConnecting status = iota // accepted; its reader has not started
	statusAnonymous                // reading; only register and login do anything
	statusActive                   // logged in as ss.user
	statusLeaving                  // shutdown began: frames read are dropped unread
	statusClosed                   // shutdown handed back everything the session held
)

var statusNames = [...]string{"connecting", "anonymous", "active", "leaving", "closed"}

func (s status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// next reports whether a session may move from s to to.
func (s status) next(to status) bool {
	switch to {
	case statusAnonymous:
		return s == statusConnecting
	case statusActive:
		return s == statusAnonymous
	case statusLeaving:
		return s < statusLeaving
	case statusClosed:
		return s == statusLeaving
	}
	return false
}

func (ss *session) status() status { return status(ss.st.Load()) }

// setStatus is the one place a session's status changes. It fails when the
// move is not allowed from where the session is now: a login that
// completes after shutdown began does not make the session active, and
// only one caller ever moves it to leaving (and so runs the shutdown).
// Entering leaving closes ss.leave, which wakes whatever waits on the
// session (a login waiting for older sessions, a paused reader).
func (ss *session) setStatus(to status) bool {
	for {
		from := ss.status()
		if !from.next(to) {
			return false
		}
		if ss.st.CompareAndSwap(int32(from), int32(to)) {
			if to == statusLeaving {
				close(ss.leave)
			}
			return true
		}
	}
}
