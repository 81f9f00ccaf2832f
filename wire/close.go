package wire

import (
	"slices"
	"time"
)

// WebSocket close codes the server sends; closeTable says what each means.
const (
	CloseNormal         = 1000
	CloseGoingAway      = 1001 // server shutting down or draining
	CloseUnsupported    = 1003 // binary frame
	CloseInvalidPayload = 1007 // not JSON / not UTF-8
	ClosePolicy         = 1008 // bad_request
	CloseTooBig         = 1009 // frame over the size limit
	CloseInternal       = 1011 // a recovered server fault
	CloseReplaced       = 4001 // a newer login of the same user
	CloseLoginTimeout   = 4002 // no successful login in time
	CloseBadCredentials = 4003 // login failed
	CloseSlowConsumer   = 4004 // the send queue overflowed
	CloseIdle           = 4005 // no answer to pings within the idle timeout
	CloseRateExceeded   = 4006 // kept exceeding its read budget or rate limits
	CloseAccountDeleted = 4007 // the user's account was deleted (delete_account)
	CloseBanned         = 4008 // an operator banned the user (occase moderate ban)
)

// CloseInfo is what one close code means: the reason text the server sends
// with it, and what a client should do after it. docs/protocol.md ("Close
// codes") and the web app (webapp/static/assets/codes.js) say the same; a
// test in webapp compares them with this table.
type CloseInfo struct {
	Code   int
	Reason string // the close frame's reason text; "" sends none
	// Reconnect says whether a client reconnects on its own: not after
	// 4001 (the user is logged in elsewhere), 4003 (the credentials are
	// wrong) or 4007 (the account is gone), where reconnecting would only
	// repeat the close.
	Reconnect bool
	// MinDelay is the least wait before reconnecting, doubling on each
	// close of this code in a row; 0: the client's usual backoff.
	MinDelay time.Duration
}

// closeTable is in code order. 4006's delay is --abuse-window's default:
// a client that reconnects sooner and sends the same way is closed again.
var closeTable = [...]CloseInfo{
	{CloseNormal, "", true, 0},
	{CloseGoingAway, "server shutting down", true, 0},
	{CloseUnsupported, "text frames only", true, 0},
	{CloseInvalidPayload, "invalid JSON", true, 0},
	{ClosePolicy, "bad request", true, 0},
	{CloseTooBig, "", true, 0},
	{CloseInternal, "internal error", true, 0},
	{CloseReplaced, "replaced", false, 0},
	{CloseLoginTimeout, "login timeout", true, 0},
	{CloseBadCredentials, "bad credentials", false, 0},
	{CloseSlowConsumer, "send queue full", true, 0},
	{CloseIdle, "idle timeout", true, 0},
	{CloseRateExceeded, "rate exceeded", true, 10 * time.Second},
	{CloseAccountDeleted, "account deleted", false, 0},
	{CloseBanned, "banned", false, 0},
}

// CloseCodes returns every close code the server sends, in code order.
func CloseCodes() []CloseInfo { return slices.Clone(closeTable[:]) }

// Close returns what code means, and false for a code the server never
// sends.
func Close(code int) (CloseInfo, bool) {
	i, ok := slices.BinarySearchFunc(closeTable[:], code, func(c CloseInfo, code int) int { return c.Code - code })
	if !ok {
		return CloseInfo{}, false
	}
	return closeTable[i], true
}

// CloseReason is the reason text the server sends with code.
func CloseReason(code int) string {
	c, _ := Close(code)
	return c.Reason
}
