// Package wire owns the occase protocol's frames as bytes: the one-pass scan
// of a client frame into its top-level fields, the stable failure reasons,
// the channel-hash packing and the close codes. The server and Go clients
// (the load generator, tests) share it; it knows nothing about Redis or
// connections.
package wire

import (
	"errors"
	"fmt"
)

// Stable failure reasons sent to clients in the "reason" field.
const (
	BadRequest     = "bad_request"
	NotLoggedIn    = "not_logged_in"
	BadCredentials = "bad_credentials"
	QuotaExceeded  = "quota_exceeded"
	NotFound       = "not_found"
	NotOwner       = "not_owner"
	RateLimited    = "rate_limited"
	TooLarge       = "too_large"
	Unavailable    = "unavailable"
	Internal       = "internal"
	QueueFull      = "queue_full" // the recipient's offline queue, or the sender's share of it, is full
	BadToken       = "bad_token"  // register: the signup_token is missing, forged, expired or used
	// RecipientInactive: the recipient has not logged in within the queue
	// lifetime, so a message to them could not be kept.
	RecipientInactive = "recipient_inactive"
	// PostsFull: the server holds as many posts as its budget allows
	// (--max-posts, --max-post-bytes); a publish may succeed later.
	PostsFull = "posts_full"
	// Blocked: the recipient of a message (or receipt) blocks its sender;
	// nothing was stored (docs/protocol.md "Blocking a user").
	Blocked = "blocked"
	// TooManyBlocks: a block beyond the most users one may block.
	TooManyBlocks = "too_many_blocks"
	// Banned: login refused, the user is banned by an operator; the
	// connection closes with CloseBanned (docs/protocol.md "Banned
	// accounts"). A client shows it and does not retry.
	Banned = "banned"
	// UnderReview: a publish refused while the author has a listing
	// hidden pending review, or deleted by them while hidden; possible
	// again once an operator dismissed or removed it (docs/protocol.md
	// "Publishing while under review").
	UnderReview = "under_review"
)

// Error is a failure a client may see: a stable reason code and an optional
// human sentence. It never carries an internal error text.
type Error struct {
	Reason string
	Detail string
	// Malformed marks a request that cannot be understood (not JSON, no
	// cmd, unknown cmd, a required field missing or of the wrong type): the
	// server answers {"cmd":"error",...} and closes the connection, instead
	// of a fail reply on a connection that stays open.
	Malformed bool
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Detail
}

// Errorf builds an *Error with a formatted detail.
func Errorf(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Malformedf builds a bad_request *Error that closes the connection.
func Malformedf(format string, args ...any) *Error {
	return &Error{Reason: BadRequest, Detail: fmt.Sprintf(format, args...), Malformed: true}
}

// AsError returns the client-facing error inside err, or an "internal" one
// when err is not a *Error (the operator sees err in the log, the client
// never does).
func AsError(err error) *Error {
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	return &Error{Reason: Internal}
}
