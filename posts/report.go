package posts

import (
	"context"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/wire"
	"go.uber.org/zap"
)

// Reporting a post (docs/protocol.md "Reporting a post"): a user tells the
// operators a post breaks the rules. Reports are stored in Redis next to
// the post (broker/reports.go) and read only by operators (`occase
// moderate reports`); no user ever sees another's report.

// MaxReportText is the most characters a report's text may hold.
const MaxReportText = 280

// ReportReasons are the reasons a report may give.
var ReportReasons = []string{"spam", "scam", "prohibited", "offensive", "other"}

// Outcomes of an accepted report: the result label of
// occase_reports_total, next to the refusal reasons.
const (
	ReportNew    = "new"    // a new reporter, counted
	ReportAgain  = "again"  // the same reporter again: reason and text replaced, not counted
	ReportCapped = "capped" // a new reporter past the cap: acknowledged, not stored
	// ReportQueueFull: a post not in the review queue, which is full of
	// posts with several reporters: acknowledged, not stored.
	ReportQueueFull = "queue_full"
)

// ReportDone says what an accepted report did.
type ReportDone struct {
	Outcome string // ReportNew, ReportAgain, ReportCapped or ReportQueueFull
	// Evicted: the post with a single reporter that the report took out
	// of the full review queue (its reports deleted); 0: none.
	Evicted uint64
	// Hidden: this report hid the post (broker.ReportBounds.HideAt);
	// Reporters: its distinct reporters after it.
	Hidden    bool
	Reporters int
	Post      uint64 // the reported post
}

// Report handles {"cmd":"report","id":N,"reason":"...","text":"..."} from
// the user of c: Redis checks in one script that the post exists and is
// not the user's own, and stores the report within b. It returns what the
// report did, or a *wire.Error. Every refusal is a fail reply on a
// connection that stays open.
//
// A report that is not stored (capped, queue_full) is acknowledged ok
// like one that is: the reporter did nothing wrong, and a distinct answer
// would tell a prober how reported a post is or how full the queue is.
// The operator sees these outcomes in the metric and the log.
func (s *Service) Report(ctx context.Context, c Conn, req *wire.Request, b broker.ReportBounds) (ReportDone, error) {
	id, r, err := parseReport(req)
	if err != nil {
		return ReportDone{}, err
	}
	r.By = c.User()
	now := s.cfg.Clock()
	r.At = now.Unix()
	if b.HideAt > 0 {
		if r.Aged, err = s.aged(ctx, r.By, now); err != nil {
			s.log.Warn("reading a reporter's account age failed", zap.String("reporter", r.By), zap.Error(err))
			return ReportDone{}, &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
		}
	}
	res, err := s.b.ReportPost(ctx, id, r, b)
	switch {
	case errors.Is(err, broker.ErrPostNotFound):
		return ReportDone{}, wire.Errorf(wire.NotFound, "there is no post %d", id)
	case errors.Is(err, broker.ErrOwnPost):
		return ReportDone{}, wire.Errorf(wire.BadRequest, "one cannot report one's own post")
	case err != nil:
		s.log.Warn("storing a report failed", zap.Uint64("post", id), zap.Error(err))
		return ReportDone{}, &wire.Error{Reason: wire.Unavailable, Detail: "try again later"}
	}
	outcome := ReportNew
	switch {
	case res.QueueFull:
		outcome = ReportQueueFull
	case res.Capped:
		outcome = ReportCapped
	case res.Again:
		outcome = ReportAgain
	}
	if res.Evicted != 0 {
		s.log.Info("review queue full: a post with one reporter left it", zap.Uint64("evicted", res.Evicted),
			zap.Uint64("for", id), zap.Int("max", b.Queue))
	}
	// The text stays out of the log: it is the user's words, for the
	// operators' review only.
	s.log.Info("post reported", zap.Uint64("post", id), zap.String("reporter", r.By),
		zap.String("reason", r.Reason), zap.String("outcome", outcome), zap.Int("reporters", res.Reporters),
		zap.Bool("aged", r.Aged), zap.Bool("hid", res.Hidden))
	ack := []byte(`{"cmd":"report_ack","result":"ok","id":`)
	ack = strconv.AppendUint(ack, id, 10)
	c.Send(append(ack, '}'))
	return ReportDone{Outcome: outcome, Evicted: res.Evicted, Hidden: res.Hidden, Reporters: res.Reporters, Post: id}, nil
}

// aged tells whether user's account is at least ReportMinAge old at now,
// so that its report counts toward hiding a post. The account's age is
// in its own hash, in another slot than the post's reports: it is read
// here, before the report's script, which is given the answer. An
// account made before accounts kept their creation time counts as made
// when the first node that keeps it met the store (broker.MadeSince).
func (s *Service) aged(ctx context.Context, user string, now time.Time) (bool, error) {
	if s.cfg.ReportMinAge <= 0 {
		return true, nil
	}
	made, ok, err := s.b.AccountMade(ctx, user)
	if err != nil || !ok {
		return false, err
	}
	if made == 0 {
		// Made before accounts kept their age, or by an older node
		// during the upgrade: as old as the time since the first node
		// of this version met the store, no older.
		if made, err = s.madeSince(ctx); err != nil {
			return false, err
		}
	}
	return now.Sub(time.UnixMilli(made)) >= s.cfg.ReportMinAge, nil
}

// parseReport reads a report request. Every refusal is bad_request,
// except an id that is a number but no post id (not_found), as for
// delete.
func parseReport(req *wire.Request) (uint64, broker.Report, error) {
	var r broker.Report
	raw := req.Get("id")
	if raw == nil {
		return 0, r, invalid(`missing field "id"`)
	}
	id, ok := wire.Uint64(raw)
	if !ok {
		if !isNumber(raw) {
			return 0, r, invalid(`"id" must be a post id`)
		}
		return 0, r, wire.Errorf(wire.NotFound, "there is no post %s", clip(raw))
	}
	reason, ok := wire.String(req.Get("reason"))
	if !ok || !validReason(reason) {
		return id, r, invalid(`"reason" must be one of spam, scam, prohibited, offensive, other`)
	}
	r.Reason = reason
	if raw := req.Get("text"); raw != nil && string(raw) != "null" {
		// Bound the bytes before unquoting: a character is at most
		// twelve bytes as sent (a surrogate pair, \ud83d\ude00), plus
		// the quotes.
		if len(raw) > MaxReportText*12+2 {
			return id, r, invalid(`"text" holds at most %d characters`, MaxReportText)
		}
		text, ok := wire.String(raw)
		if !ok {
			return id, r, invalid(`"text" must be a string`)
		}
		if err := checkReportText(text); err != nil {
			return id, r, err
		}
		r.Text = text
	}
	return id, r, nil
}

func validReason(s string) bool {
	for _, r := range ReportReasons {
		if s == r {
			return true
		}
	}
	return false
}

// checkReportText accepts at most MaxReportText characters of valid
// UTF-8, with no control character but the newline: what an operator's
// terminal shows as written, and at most four bytes a character in Redis.
func checkReportText(s string) error {
	if !utf8.ValidString(s) {
		return invalid(`"text" is not valid UTF-8`)
	}
	n := 0
	for _, c := range s {
		n++
		if n > MaxReportText {
			return invalid(`"text" holds at most %d characters`, MaxReportText)
		}
		if (c < 0x20 && c != '\n') || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return invalid(`"text" must not hold control characters`)
		}
	}
	return nil
}

// ReportFail is the fail reply to a report: it names the post when the
// request gave a usable id.
func ReportFail(req *wire.Request, e *wire.Error) []byte {
	b := []byte(`{"cmd":"report_ack","result":"fail","reason":`)
	b = wire.AppendString(b, e.Reason)
	if e.Detail != "" {
		b = append(b, `,"detail":`...)
		b = wire.AppendString(b, e.Detail)
	}
	if id, ok := wire.Uint64(req.Get("id")); ok {
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, id, 10)
	}
	return append(b, '}')
}

// madeSince is broker.MadeSince, read once per node (it never changes).
func (s *Service) madeSince(ctx context.Context) (int64, error) {
	if v := s.legacyMade.Load(); v != 0 {
		return v, nil
	}
	v, err := s.b.MadeSince(ctx, s.cfg.Clock().UnixMilli())
	if err != nil {
		return 0, err
	}
	s.legacyMade.Store(v)
	return v, nil
}
