package moderation

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/occase/occase/broker"
	"go.uber.org/zap"
)

// The moderation log (docs/operations.md "Who did what: the moderation
// log"): each action done through the Service (dismiss, remove, ban,
// unban), from the API or the CLI on Redis, is appended after it is
// done, one JSON line, to a list the broker bounds (broker.MaxModLog,
// newest first). The action is never undone or hidden for a failed
// write: its result says logged:false and the node logs an error. The
// log is a record for the operators; nothing decides on it.

// ResultOK is a log entry's result for an action done in full; else the
// result is the refusal reason of what was done in part
// (author_not_told, ban_not_listed, posts_not_all_deleted).
const ResultOK = "ok"

// MaxLogLimit bounds a page of the log.
const MaxLogLimit = 1000

// logWriteTimeout bounds the log's write, which runs even when the
// request that made the action has gone.
const logWriteTimeout = 5 * time.Second

// LogEntry is one line of the moderation log. Note and Detail hold
// operator text stored as given: whoever shows them makes them safe.
type LogEntry struct {
	At int64 `json:"at"` // Unix ms
	// By is the operator: the token's name (API), or cli:<user>@<host>
	// as the CLI declares it (not authenticated).
	By string `json:"by"`
	// Addr is the client address of an API call.
	Addr   string `json:"addr,omitempty"`
	Action string `json:"action"` // dismiss, remove, ban, unban, rebuild; hide, resend (by AutoBy)
	// Target is the post id (dismiss, remove), the user id (ban, unban),
	// or "bans" (rebuild: of the list of bans).
	Target      string `json:"target"`
	Reason      string `json:"reason,omitempty"`
	Note        string `json:"note,omitempty"`
	RemovePosts bool   `json:"remove_posts,omitempty"`
	Result      string `json:"result"`
	Detail      string `json:"detail,omitempty"`
}

// AutoBy is the By of the entries the nodes write themselves, not an
// operator: an automatic hide (AutoHideEntry), a kept notice resent
// (Resender).
const AutoBy = "auto"

// AutoHideEntry is the log line of post id hidden automatically, once
// aged distinct reporters reached the threshold (--auto-hide-reports), at
// now (Unix ms). The node that stored the report writes it, after the
// script that hid the post: the log is in another slot, so the line may
// be missing (logged as an error) where the hide is not.
func AutoHideEntry(now int64, id uint64, reporters, threshold int) []byte {
	b, _ := json.Marshal(LogEntry{At: now, By: AutoBy, Action: "hide", Target: strconv.FormatUint(id, 10),
		Result: ResultOK, Detail: fmt.Sprintf("%s; --auto-hide-reports %d", Reporters(reporters), threshold)})
	return b
}

// LogPage is a page of the moderation log, newest first.
type LogPage struct {
	Total   int        `json:"total"`
	Offset  int        `json:"offset"`
	Entries []LogEntry `json:"entries"`
}

type addrKey struct{}

// WithClientAddr returns ctx carrying the client address of an API call,
// for the log.
func WithClientAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, addrKey{}, addr)
}

// addrField is the node log's field for the client address in ctx.
func addrField(ctx context.Context) zap.Field {
	if a, _ := ctx.Value(addrKey{}).(string); a != "" {
		return zap.String("addr", a)
	}
	return zap.Skip()
}

// record appends e, stamped with the time and the client address, and
// says whether it was written.
func (s *Service) record(ctx context.Context, e LogEntry) bool {
	e.At = s.now().UnixMilli()
	e.Addr, _ = ctx.Value(addrKey{}).(string)
	b, err := json.Marshal(e)
	if err == nil {
		// The action is done: record it even when its caller has gone.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logWriteTimeout)
		err = s.store.AppendModLog(wctx, b)
		cancel()
	}
	if err != nil {
		s.log.Error("moderation: the action is done but the moderation log could not record it",
			zap.String("action", e.Action), zap.String("target", e.Target), zap.String("operator", e.By), zap.Error(err))
		return false
	}
	return true
}

// CheckLog checks a page of the log.
func CheckLog(offset, limit int) error {
	return CheckPage("", offset, limit, MaxLogLimit, broker.MaxModLog)
}

// Log reads limit entries of the moderation log from offset, newest
// first (GET /admin/v1/log, `occase moderate log`). A line that is not
// an entry (written by hand) is shown with result "unreadable".
func (s *Service) Log(ctx context.Context, offset, limit int) (LogPage, error) {
	if err := CheckLog(offset, limit); err != nil {
		return LogPage{}, err
	}
	lines, total, err := s.store.ModLog(ctx, offset, limit)
	if err != nil {
		return LogPage{}, err
	}
	p := LogPage{Total: total, Offset: offset, Entries: make([]LogEntry, 0, len(lines))}
	for _, l := range lines {
		var e LogEntry
		if json.Unmarshal([]byte(l), &e) != nil {
			e = LogEntry{Result: "unreadable"}
		}
		p.Entries = append(p.Entries, e)
	}
	return p, nil
}
