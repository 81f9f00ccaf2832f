// Package moderation owns the operators' actions on a marketplace: the
// review queue of reported posts, dismissing a post's reports, removing a
// post (telling its author why, with a notice, when given a reason),
// banning and unbanning a user, and the list of bans. One Service runs them, on whatever
// Store it is given: the node's own broker (the admin API, http.go) or the
// Redis the CLI opens (`occase moderate` without --node). The CLI over
// the API (Client, client.go) gets the same results back as JSON, so each
// action has one implementation, one set of refusals and one wire shape.
//
// Adding an action is one method here, one route in http.go's routes and
// one method of Client.
package moderation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/chat"
	"github.com/occase/occase/images"
	"go.uber.org/zap"
)

// Store is what moderation needs of the broker.
type Store interface {
	ReportedPosts(ctx context.Context, limit, details int) ([]broker.ReportedPost, error)
	ReportQueueLen(ctx context.Context) (int, error)
	// DismissReports also says whether the post was hidden automatically
	// (and is shown again now).
	DismissReports(ctx context.Context, id uint64) (int, bool, error)
	RemoveWithNotice(ctx context.Context, id uint64, r broker.Removal) (broker.Removed, error)
	// ResendNotice writes the notice of a removal whose write failed
	// (kept by RemoveWithNotice); found false when none is kept.
	ResendNotice(ctx context.Context, id uint64, now int64, retryFor time.Duration) (r broker.Removed, found bool, err error)
	// KeptNotices lists the kept notices (at most
	// broker.MaxUnsentNotices), for the automatic resend.
	KeptNotices(ctx context.Context) ([]broker.KeptNotice, error)
	// ClaimKeptNotice gives post id's kept notice to one caller, whom
	// no other follows before now + wait.
	ClaimKeptNotice(ctx context.Context, id uint64, now int64, wait time.Duration) (claimed, found bool, err error)
	// BanUser and UnbanUser return broker.ErrBanNotListed when the ban
	// (or unban) is made but the list of bans was not updated.
	BanUser(ctx context.Context, id string, now int64, note string) (already bool, err error)
	UnbanUser(ctx context.Context, id string) (was bool, err error)
	ListBans(ctx context.Context, offset, limit int) (broker.BanPage, error)
	// RebuildBanList puts the bans the list lacks on it (a SCAN of the
	// user hashes): bans made before the list, or whose write failed.
	RebuildBanList(ctx context.Context) (broker.BanRebuild, error)
	PostsOf(ctx context.Context, user string) ([]uint64, error)
	// PostsJSON reads posts' JSON ("" for one not stored): a removal
	// reads its post's photos before the post goes.
	PostsJSON(ctx context.Context, ids []uint64) ([]string, error)
	// Evidence reads the copy kept of a post its author deleted while
	// queued: a dismissal or removal of it purges its photos.
	Evidence(ctx context.Context, id uint64) (author, post string, found bool, err error)
	DeletePost(ctx context.Context, id uint64, user string) error
	// The moderation log (broker/modlog.go): append a line; read lines,
	// newest first, and how many it holds.
	AppendModLog(ctx context.Context, line []byte) error
	ModLog(ctx context.Context, offset, limit int) ([]string, int, error)
}

// Bounds of a report listing (the CLI's --limit and --texts).
const (
	MaxListLimit = 1000
	MaxListTexts = 20
)

// Refusal reasons: stable codes, the same in the HTTP API's "reason" and
// in the CLI's exit. Each is paired with an HTTP status in http.go.
const (
	ReasonBadRequest   = "bad_request"
	ReasonPostNotFound = "post_not_found"
	ReasonNoReports    = "no_reports"
	ReasonUserNotFound = "user_not_found"
	ReasonPostsLeft    = "posts_not_all_deleted"
	ReasonUnavailable  = "unavailable"
	// ReasonBanNotListed: the ban holds (sessions closed, logins
	// refused), its posts were removed if asked, but the list of bans
	// lacks it; the same action again writes it.
	ReasonBanNotListed = "ban_not_listed"
	// ReasonNotTold: the post is removed, but its author could not be
	// told why (the notice's write failed, retried for 10 s); the notice
	// is kept, and the same removal again sends it.
	ReasonNotTold = "author_not_told"
)

// Error is a refusal an operator reads: a stable Reason and a sentence.
// Result, when set, is what was done before the refusal (a ban whose
// posts were not all deleted).
type Error struct {
	Reason string
	Msg    string
	Result any
	err    error // the cause, for logs and errors.Is; never sent
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.err }

func refuse(reason, format string, a ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, a...)}
}

// Service runs the moderation actions on a Store.
type Service struct {
	store     Store
	queueMax  int
	noticeTTL time.Duration
	now       func() time.Time
	log       *zap.Logger
	// rebuilding: a rebuild of the list of bans runs (one at a time).
	rebuilding atomic.Bool
	// noticeRetry bounds the retries of a removal's notice (0:
	// broker.DefaultNoticeRetry); tests shorten it.
	noticeRetry time.Duration
	// photos purges a removed post's photos (photos.go); nil: not done.
	photos PhotoPurger
	// review makes a photo's review token (SetReviewer); nil: none.
	review func(digest string) string
}

// New returns a Service on store; queueMax is the review queue's bound
// the nodes run with (--report-queue-max), reported with the queue;
// noticeTTL the lifetime of a notice to an author (the offline queue's,
// --chat-queue-ttl; 0: its default). log gets one info line per action taken, with the
// operator.
func New(store Store, queueMax int, noticeTTL time.Duration, now func() time.Time, log *zap.Logger) *Service {
	if now == nil {
		now = time.Now
	}
	if noticeTTL <= 0 {
		noticeTTL = chat.DefaultConfig().QueueTTL // as the nodes' chat.New
	}
	return &Service{store: store, queueMax: queueMax, noticeTTL: noticeTTL, now: now, log: log}
}

// Queue is the review queue as an operator sees it: GET /admin/v1/reports.
type Queue struct {
	// Queued is how many posts the queue holds, QueueMax its bound.
	Queued   int          `json:"queued"`
	QueueMax int          `json:"queue_max"`
	Reports  []ReportLine `json:"reports"`
}

// ReportLine is one reported post, as `occase moderate reports --json`
// writes it, one a line.
type ReportLine struct {
	ID        uint64         `json:"id"`
	Author    string         `json:"author"`
	Gone      bool           `json:"gone,omitempty"`
	Reporters int            `json:"reporters"`
	Reasons   map[string]int `json:"reasons"`
	Title     string         `json:"title,omitempty"`
	Snippet   string         `json:"snippet"`
	// Images: the post's photo paths, relative to the public site, each
	// of the web app's shape (readPost), at most MaxImages.
	Images []string        `json:"images,omitempty"`
	Latest []broker.Report `json:"latest"`
	// Hidden: the post is hidden automatically (--auto-hide-reports)
	// until its reports are dismissed or it is removed; such posts come
	// first in the queue.
	Hidden bool `json:"hidden,omitempty"`
	// DeletedByAuthor: the author deleted the post while it was in the
	// queue; it is gone for everyone, and Title, Snippet, Images and
	// Snapshot are taken from the snapshot kept of it (docs/security.md
	// "Evidence kept when an author deletes a reported listing").
	DeletedByAuthor bool `json:"deleted_by_author,omitempty"`
	// Snapshot: the post's JSON as it was when its author deleted it.
	Snapshot json.RawMessage `json:"snapshot,omitempty"`
	// ImagesReview: for a hidden listing or a copy kept of one, whose
	// photos the img nodes refuse to everyone else, a review token per
	// entry of Images ("" for none), to add as "?review=<token>": the img
	// nodes serve the photo for it, for 10 minutes (images.ReviewTTL).
	// Only where the node has the image key.
	ImagesReview []string `json:"images_review,omitempty"`
}

// CheckList checks a listing's limit and texts.
func CheckList(limit, texts int) error {
	if limit < 1 || limit > MaxListLimit {
		return refuse(ReasonBadRequest, "limit %d: want 1 to %d", limit, MaxListLimit)
	}
	if texts < 1 || texts > MaxListTexts {
		return refuse(ReasonBadRequest, "texts %d: want 1 to %d", texts, MaxListTexts)
	}
	return nil
}

// Reports lists up to limit posts of the review queue, most reported
// first, each with its latest texts (at most texts).
func (s *Service) Reports(ctx context.Context, limit, texts int) (Queue, error) {
	if err := CheckList(limit, texts); err != nil {
		return Queue{}, err
	}
	list, err := s.store.ReportedPosts(ctx, limit, texts)
	if err != nil {
		return Queue{}, err
	}
	queued, err := s.store.ReportQueueLen(ctx)
	if err != nil {
		return Queue{}, err
	}
	q := Queue{Queued: queued, QueueMax: s.queueMax, Reports: make([]ReportLine, 0, len(list))}
	for _, p := range list {
		l := toReportLine(p)
		if s.review != nil && (l.Hidden || l.DeletedByAuthor) {
			l.ImagesReview = images.ReviewTokens(l.Images, s.review)
		}
		q.Reports = append(q.Reports, l)
	}
	return q, nil
}

func toReportLine(p broker.ReportedPost) ReportLine {
	l := ReportLine{ID: p.ID, Author: p.Author, Gone: p.Post == "", Reporters: p.Reporters, Reasons: p.Reasons,
		Latest: []broker.Report{}, Hidden: p.Hidden, DeletedByAuthor: p.DeletedByAuthor}
	if p.DeletedByAuthor && json.Valid([]byte(p.Post)) {
		l.Snapshot = json.RawMessage(p.Post)
	}
	l.Title, l.Snippet, l.Images = readPost(p.Post)
	for _, s := range p.Latest {
		var r broker.Report
		if json.Unmarshal([]byte(s), &r) == nil {
			l.Latest = append(l.Latest, r)
		}
	}
	return l
}

// Dismissed: a post's reports cleared, the post kept.
type Dismissed struct {
	Post      uint64 `json:"post"`
	Reporters int    `json:"reporters"`
	// Shown: the post was hidden automatically and is shown again.
	Shown bool `json:"shown,omitempty"`
	// DeletedByAuthor: the post was a copy kept after its author deleted
	// it while queued; the copy went with the reports, and its photos
	// are purged as a removal's (PhotosAnswer, as Removed's).
	DeletedByAuthor bool `json:"deleted_by_author,omitempty"`
	// Logged: the moderation log has it (false: done, not recorded).
	Logged bool `json:"logged"`
	PhotosAnswer
}

// Dismiss clears post id's reports; the post stays, and is shown again
// when it was hidden automatically.
func (s *Service) Dismiss(ctx context.Context, by string, id uint64) (Dismissed, error) {
	// A copy kept of a post its author deleted goes with the dismissal:
	// nobody will see the listing again, so its photos are purged.
	var copied string
	if s.photos != nil {
		if copied = s.photosBefore(ctx, id, false); copied != "" {
			if h, ok := s.photos.(PhotoHolder); ok {
				defer h.Hold(id)()
			}
		}
	}
	n, shown, err := s.store.DismissReports(ctx, id)
	if err != nil {
		return Dismissed{}, err
	}
	if n == 0 {
		return Dismissed{}, refuse(ReasonNoReports, "post %d has no reports: nothing dismissed", id)
	}
	s.log.Info("moderation: reports dismissed", zap.Uint64("post", id), zap.Int("reporters", n), zap.Bool("shown", shown),
		zap.String("operator", by), addrField(ctx))
	d := Dismissed{Post: id, Reporters: n, Shown: shown}
	detail := Reporters(n)
	if shown {
		detail += "; shown again"
	}
	if copied != "" {
		ph := s.purgePhotos(ctx, id, copied, &d.PhotosAnswer)
		d.DeletedByAuthor = true
		detail += "; deleted by its author, its copy dropped"
		if ph != "" {
			detail += "; " + ph
		}
	}
	d.Logged = s.record(ctx, LogEntry{By: by, Action: "dismiss", Target: strconv.FormatUint(id, 10),
		Result: ResultOK, Detail: detail})
	return d, nil
}

// RemoveRequest is what an operator may say with a removal (the body of
// POST /admin/v1/posts/{id}/remove, the CLI's --reason and --note).
type RemoveRequest struct {
	// Reason, one of broker.RemovalReasons, tells the author why with a
	// notice; empty: the author is told nothing.
	Reason string `json:"reason,omitempty"`
	// Note is a line for the author in the notice (at most
	// broker.MaxNoticeNote bytes, no control characters but new lines);
	// only with a Reason.
	Note string `json:"note,omitempty"`
}

// Check refuses a request before anything is removed: an unknown
// reason, a note without a reason, a note over its bounds.
func (r RemoveRequest) Check() error { return r.CheckAs("") }

// CheckAs is Check with the inputs named as flag names them: "" for the
// API's fields ("reason", "a note"), "--" for the CLI's flags.
func (r RemoveRequest) CheckAs(flag string) error {
	name := func(n string) string {
		if flag == "" {
			return "a " + n
		}
		return flag + n
	}
	if r.Reason != "" && !slices.Contains(broker.RemovalReasons, r.Reason) {
		return refuse(ReasonBadRequest, "%sreason %q: want one of %s", flag, r.Reason, strings.Join(broker.RemovalReasons, ", "))
	}
	if r.Note != "" && r.Reason == "" {
		return refuse(ReasonBadRequest, "%s is for the author's notice: give %s too", name("note"), name("reason"))
	}
	if len(r.Note) > broker.MaxNoticeNote || !utf8.ValidString(r.Note) {
		return refuse(ReasonBadRequest, "%snote: at most %d bytes of UTF-8, not %d", flag, broker.MaxNoticeNote, len(r.Note))
	}
	if r.Reason != "" {
		if err := (broker.Notice{Kind: broker.NoticePostRemoved, Reason: r.Reason, Note: r.Note}).Check(); err != nil {
			return refuse(ReasonBadRequest, "%snote: %v", flag, err)
		}
	}
	return nil
}

// Removed: a post deleted as its author's delete would.
type Removed struct {
	Post      uint64 `json:"post"`
	Author    string `json:"author"`
	Reporters int    `json:"reporters"`
	// Reason is the request's; Told says the author got a notice (false
	// with a reason: the author's account is gone, nobody to tell).
	Reason string `json:"reason,omitempty"`
	Told   bool   `json:"told"`
	// NoticeKept: the notice could not be written and is kept; the same
	// removal again sends it (with ReasonNotTold).
	NoticeKept bool `json:"notice_kept,omitempty"`
	// Resent: the post was removed earlier, and this sent its kept
	// notice (Reason is the one kept then).
	Resent bool `json:"resent,omitempty"`
	// DeletedByAuthor: the author had deleted the post while it was
	// queued; the removal cleared its snapshot and reports and is
	// recorded, and nobody was told of a deletion again.
	DeletedByAuthor bool `json:"deleted_by_author,omitempty"`
	// Logged: the moderation log has it (false: done, not recorded).
	Logged bool `json:"logged"`
	// The removed post's photos (photos.go).
	PhotosAnswer
}

// PhotosAnswer is what a removal, or the dismissal of a copy kept after
// its author deleted the post, answers of the post's photos (photos.go);
// its members are the answer's own (Removed, Dismissed). Photos lists
// their paths on the img nodes, what to purge from a CDN in front of
// them. PhotosDeleted is how many were deleted at once (absent when the
// purge was not made here); PhotosKept how many another live post links;
// PhotosSent how many nodes with an image store were asked to purge them;
// PhotosError a stable code when they were not purged (the removal
// stands: they then go with the image sweep).
type PhotosAnswer struct {
	Photos        []string `json:"photos,omitempty"`
	PhotosDeleted *int     `json:"photos_deleted,omitempty"`
	PhotosKept    int      `json:"photos_kept,omitempty"`
	PhotosSent    int      `json:"photos_sent,omitempty"`
	PhotosError   string   `json:"photos_error,omitempty"`
}

// Remove deletes post id as its author's delete would (every node drops
// it, subscribers get post_deleted) and its reports with it; with a
// reason, its author then gets a notice saying why, living the offline
// queue's lifetime. The request is checked before anything is touched.
func (s *Service) Remove(ctx context.Context, by string, id uint64, req RemoveRequest) (Removed, error) {
	if err := req.Check(); err != nil {
		return Removed{}, err
	}
	// The photos are read before the post goes; a read that fails only
	// leaves them to the image sweep.
	var post string
	if h, ok := s.photos.(PhotoHolder); ok {
		defer h.Hold(id)()
	}
	if s.photos != nil {
		post = s.photosBefore(ctx, id, true)
	}
	r, err := s.store.RemoveWithNotice(ctx, id, broker.Removal{Reason: req.Reason, Note: req.Note,
		At: s.now().UnixMilli(), TTL: s.noticeTTL, RetryFor: s.noticeRetry})
	author, n := r.Author, r.Reporters
	if errors.Is(err, broker.ErrPostNotFound) {
		// Removed before, its notice unsent: this sends it.
		if res, done, err := s.resend(ctx, by, id); done {
			return res, err
		}
		// Reports can outlive a post only if a node of an older version
		// deleted it; clear them.
		if left, _, derr := s.store.DismissReports(ctx, id); derr == nil && left > 0 {
			s.log.Info("moderation: leftover reports of a gone post cleared", zap.Uint64("post", id), zap.String("operator", by), addrField(ctx))
			return Removed{}, refuse(ReasonPostNotFound, "no post %d (deleted or expired already); cleared its leftover reports (%s)", id, Reporters(left))
		}
		return Removed{}, refuse(ReasonPostNotFound, "no post %d (never published, or deleted or expired already)", id)
	}
	res := Removed{Post: id, Author: author, Reporters: n, Reason: req.Reason, Told: r.Notice > 0, NoticeKept: r.Kept,
		DeletedByAuthor: r.DeletedByAuthor}
	if err != nil && author != "" {
		// Removed, but the notice could not be written (retried already).
		s.log.Info("moderation: post removed", zap.Uint64("post", id), zap.String("author", author),
			zap.Int("reporters", n), zap.String("operator", by), addrField(ctx))
		detail := notTold(author, r.Kept)
		if ph := s.purgePhotos(ctx, id, post, &res.PhotosAnswer); ph != "" {
			detail += "; " + ph
		}
		res.Logged = s.record(ctx, LogEntry{By: by, Action: "remove", Target: strconv.FormatUint(id, 10),
			Reason: req.Reason, Note: req.Note, Result: ReasonNotTold, Detail: detail})
		return res, notToldError(id, author, r.Kept, res, err)
	}
	if err != nil {
		return Removed{}, err
	}
	s.log.Info("moderation: post removed", zap.Uint64("post", id), zap.String("author", author),
		zap.Int("reporters", n), zap.String("reason", req.Reason), zap.Bool("told", res.Told),
		zap.Bool("deleted_by_author", res.DeletedByAuthor), zap.String("operator", by), addrField(ctx))
	detail := "author " + author
	if res.DeletedByAuthor {
		detail += ", deleted by its author before review"
	}
	if res.Told {
		detail += ", told why"
	}
	if ph := s.purgePhotos(ctx, id, post, &res.PhotosAnswer); ph != "" {
		detail += "; " + ph
	}
	res.Logged = s.record(ctx, LogEntry{By: by, Action: "remove", Target: strconv.FormatUint(id, 10),
		Reason: req.Reason, Note: req.Note, Result: ResultOK, Detail: detail})
	return res, nil
}

// resend sends the notice kept for post id, removed before (done false:
// none is kept).
func (s *Service) resend(ctx context.Context, by string, id uint64) (Removed, bool, error) {
	r, found, err := s.store.ResendNotice(ctx, id, s.now().UnixMilli(), s.noticeRetry)
	if !found {
		if err != nil {
			return Removed{}, true, err
		}
		return Removed{}, false, nil
	}
	res := Removed{Post: id, Author: r.Author, Reason: r.Reason, Told: r.Notice > 0, NoticeKept: r.Kept, Resent: true}
	e := LogEntry{By: by, Action: "remove", Target: strconv.FormatUint(id, 10), Reason: r.Reason, Result: ResultOK}
	if err != nil {
		e.Result, e.Detail = ReasonNotTold, notTold(r.Author, r.Kept)+" (resend failed)"
		res.Logged = s.record(ctx, e)
		return res, true, notToldError(id, r.Author, r.Kept, res, err)
	}
	e.Detail = "author " + r.Author + ", removed before; its notice resent"
	if !res.Told {
		e.Detail = "author " + r.Author + ", removed before; the account is gone, nobody to tell"
	}
	s.log.Info("moderation: a removal's notice resent", zap.Uint64("post", id), zap.String("author", r.Author),
		zap.Bool("told", res.Told), zap.String("operator", by), addrField(ctx))
	res.Logged = s.record(ctx, e)
	return res, true, nil
}

func notTold(author string, kept bool) string {
	if kept {
		return "author " + author + ", notice kept to resend"
	}
	return "author " + author
}

func notToldError(id uint64, author string, kept bool, res Removed, err error) *Error {
	msg := fmt.Sprintf("post %d is removed, but its author %s could not be told why", id, author)
	if kept {
		msg += fmt.Sprintf(" after retries; the notice is kept: remove post %d again to send it", id)
	}
	return &Error{Reason: ReasonNotTold, Result: res, err: err, Msg: msg}
}

// BanRequest is the body of POST /admin/v1/users/{id}/ban.
type BanRequest struct {
	// Note: why, for the operators (at most broker.MaxBanNote bytes).
	Note string `json:"note,omitempty"`
	// RemovePosts: also delete every post of the user.
	RemovePosts bool `json:"remove_posts,omitempty"`
}

// Banned: what a ban did.
type Banned struct {
	User string `json:"user"`
	// Already: the user was banned before; time and note were replaced.
	Already      bool `json:"already"`
	RemovePosts  bool `json:"remove_posts"`
	PostsDeleted int  `json:"posts_deleted"`
	// Listed: the list of bans has it (false: the ban holds, but the
	// list's write failed; the same ban again writes it).
	Listed bool `json:"listed"`
	// Logged: the moderation log has it (false: done, not recorded).
	Logged bool `json:"logged"`
}

// Ban bans user: its logins are refused and its live sessions on every
// node closed (4008). With RemovePosts its posts go too. The ban comes
// first, so that no session of the user publishes while its posts are
// taken; a publish in flight at the ban may still land after the first
// pass, which a second pass takes (a rerun takes any still later). A
// failure while deleting returns the Banned so far in an Error with
// ReasonPostsLeft. A ban the list of bans could not record still holds
// and still takes the posts, then returns an Error with
// ReasonBanNotListed.
func (s *Service) Ban(ctx context.Context, by, user string, req BanRequest) (Banned, error) {
	res, err := s.ban(ctx, by, user, req)
	if res.User == "" {
		return res, err // nothing done
	}
	e := LogEntry{By: by, Action: "ban", Target: user, Note: req.Note, RemovePosts: req.RemovePosts, Result: ResultOK}
	var me *Error
	if errors.As(err, &me) {
		e.Result = me.Reason
	} else if err != nil {
		e.Result = ReasonUnavailable
	}
	var d []string
	if res.Already {
		d = append(d, "renewed")
	}
	if res.RemovePosts {
		d = append(d, strconv.Itoa(res.PostsDeleted)+" posts deleted")
	}
	e.Detail = strings.Join(d, ", ")
	res.Logged = s.record(ctx, e)
	if me != nil && me.Result != nil {
		me.Result = res
	}
	return res, err
}

func (s *Service) ban(ctx context.Context, by, user string, req BanRequest) (Banned, error) {
	if !chat.ValidUserID(user) {
		return Banned{}, refuse(ReasonBadRequest, "%q is not a user id", user)
	}
	if len(req.Note) > broker.MaxBanNote {
		return Banned{}, refuse(ReasonBadRequest, "a ban note holds at most %d bytes, not %d", broker.MaxBanNote, len(req.Note))
	}
	already, err := s.store.BanUser(ctx, user, s.now().UnixMilli(), req.Note)
	listErr := err
	if !errors.Is(err, broker.ErrBanNotListed) {
		if err != nil {
			return Banned{}, noUser(user, err)
		}
		listErr = nil
	}
	s.log.Info("moderation: user banned", zap.String("user", user), zap.Bool("renewed", already),
		zap.Bool("note", req.Note != ""), zap.Bool("listed", listErr == nil), zap.String("operator", by), addrField(ctx))
	res := Banned{User: user, Already: already, RemovePosts: req.RemovePosts, Listed: listErr == nil}
	// notListed is the end of a ban the list lacks: after the posts.
	notListed := func() error {
		if listErr == nil {
			return nil
		}
		s.log.Warn("moderation: a ban not on the list of bans", zap.String("user", user), zap.Error(listErr))
		return &Error{Reason: ReasonBanNotListed, Result: res, err: listErr,
			Msg: fmt.Sprintf("user %s is banned but not on the list of bans: run the same command again", user)}
	}
	if !req.RemovePosts {
		return res, notListed()
	}
	left := func(err error) error {
		return &Error{Reason: ReasonPostsLeft, Result: res, err: err,
			Msg: fmt.Sprintf("user %s is banned; its posts were not all deleted (%d were), run the command again", user, res.PostsDeleted)}
	}
	for range 2 {
		ids, err := s.store.PostsOf(ctx, user)
		if err != nil {
			return res, left(err)
		}
		for _, id := range ids {
			err := s.store.DeletePost(ctx, id, user)
			switch {
			case errors.Is(err, broker.ErrPostNotFound), errors.Is(err, broker.ErrNotOwner):
				continue // gone meanwhile (expired, deleted)
			case err != nil:
				return res, left(err)
			}
			res.PostsDeleted++
		}
	}
	s.log.Info("moderation: posts of a banned user deleted", zap.String("user", user),
		zap.Int("deleted", res.PostsDeleted), zap.String("operator", by), addrField(ctx))
	return res, notListed()
}

// Unbanned: what an unban did.
type Unbanned struct {
	User      string `json:"user"`
	WasBanned bool   `json:"was_banned"`
	// Logged: the moderation log has it (false: done, not recorded).
	Logged bool `json:"logged"`
}

// Unban lifts user's ban: its next login is let in.
func (s *Service) Unban(ctx context.Context, by, user string) (Unbanned, error) {
	if !chat.ValidUserID(user) {
		return Unbanned{}, refuse(ReasonBadRequest, "%q is not a user id", user)
	}
	was, err := s.store.UnbanUser(ctx, user)
	if errors.Is(err, broker.ErrBanNotListed) {
		// The ban is lifted; its stale entry is cleaned by the next
		// listing that meets it.
		s.log.Warn("moderation: unbanned, but still on the list of bans until a listing cleans it",
			zap.String("user", user), zap.Error(err))
	} else if err != nil {
		return Unbanned{}, noUser(user, err)
	}
	if was {
		s.log.Info("moderation: user unbanned", zap.String("user", user), zap.String("operator", by), addrField(ctx))
	}
	u := Unbanned{User: user, WasBanned: was}
	e := LogEntry{By: by, Action: "unban", Target: user, Result: ResultOK}
	if !was {
		e.Detail = "was not banned"
	}
	u.Logged = s.record(ctx, e)
	return u, nil
}

// MaxBansLimit bounds a page of the list of bans.
const MaxBansLimit = 1000

// CheckBans checks a page of the list of bans.
func CheckBans(offset, limit int) error {
	return CheckPage("", offset, limit, MaxBansLimit, broker.MaxBanList)
}

// CheckPage checks a page of a list (bans, the log): limit 1 to maxLimit,
// offset 0 to maxOffset; flag names them as CheckAs does.
func CheckPage(flag string, offset, limit, maxLimit, maxOffset int) error {
	if limit < 1 || limit > maxLimit {
		return refuse(ReasonBadRequest, "%slimit %d: want 1 to %d", flag, limit, maxLimit)
	}
	if offset < 0 || offset > maxOffset {
		return refuse(ReasonBadRequest, "%soffset %d: want 0 to %d", flag, offset, maxOffset)
	}
	return nil
}

// Bans lists limit bans from offset, newest first (GET /admin/v1/bans,
// `occase moderate bans`). Entries of accounts gone since, or no longer
// banned, are cleaned as they are met (BanPage.Cleaned).
func (s *Service) Bans(ctx context.Context, offset, limit int) (broker.BanPage, error) {
	if err := CheckBans(offset, limit); err != nil {
		return broker.BanPage{}, err
	}
	p, err := s.store.ListBans(ctx, offset, limit)
	if err != nil {
		return broker.BanPage{}, err
	}
	if p.Cleaned > 0 {
		s.log.Info("moderation: stale entries cleaned from the list of bans", zap.Int("cleaned", p.Cleaned))
	}
	return p, nil
}

// RebuildBans puts on the list of bans every banned user it lacks (POST
// /admin/v1/bans/rebuild, `occase moderate bans --rebuild`): bans made
// by a version before the list, or whose list write failed. It reads
// every user hash in SCAN steps, so its time grows with the users; one
// runs at a time on a Service (another is refused ReasonBusy). Running
// it again adds nothing new; an error leaves what it added so far.
func (s *Service) RebuildBans(ctx context.Context, by string) (broker.BanRebuild, error) {
	if !s.rebuilding.CompareAndSwap(false, true) {
		return broker.BanRebuild{}, refuse(ReasonBusy, "a rebuild of the list of bans is running on this node; try again when it ends")
	}
	defer s.rebuilding.Store(false)
	r, err := s.store.RebuildBanList(ctx)
	e := LogEntry{By: by, Action: "rebuild", Target: "bans", Result: ResultOK,
		Detail: fmt.Sprintf("%d users scanned, %d banned, %d added, %d listed already", r.Scanned, r.Banned, r.Added, r.Listed)}
	if r.Dropped > 0 {
		e.Detail += fmt.Sprintf(", %d oldest dropped by the bound", r.Dropped)
	}
	if err != nil {
		e.Result = ReasonUnavailable
		s.log.Warn("moderation: the rebuild of the list of bans stopped", zap.String("operator", by),
			zap.Int("added", r.Added), zap.Error(err), addrField(ctx))
	} else {
		s.log.Info("moderation: the list of bans rebuilt", zap.String("operator", by), zap.Int("scanned", r.Scanned),
			zap.Int("banned", r.Banned), zap.Int("added", r.Added), zap.Int("listed", r.Listed), addrField(ctx))
	}
	if err == nil || r.Added > 0 {
		s.record(ctx, e)
	}
	return r, err
}

// noUser makes broker.ErrNoUser an operator's sentence.
func noUser(user string, err error) error {
	if errors.Is(err, broker.ErrNoUser) {
		return &Error{Reason: ReasonUserNotFound, err: err,
			Msg: fmt.Sprintf("no user %s: never registered, deleted by its owner, or expired", user)}
	}
	return err
}

// ParsePostID reads a post id: a decimal number from 1.
func ParsePostID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, refuse(ReasonBadRequest, "%q is not a post id (a number from 1)", s)
	}
	return id, nil
}

// Reporters says "1 reporter" or "n reporters".
func Reporters(n int) string {
	if n == 1 {
		return "1 reporter"
	}
	return strconv.Itoa(n) + " reporters"
}

// readPost reads a stored post's body, the app's JSON string, once: its
// "title" and "msg" (the members the search indexes) are shown when it
// has them, else the body itself; its photos are those of "images" that
// have the web app's shape (images.PostPhotos). A member of the wrong type is
// skipped alone.
func readPost(post string) (title, snippet string, photos []string) {
	if post == "" {
		return "", "", nil
	}
	var p struct {
		Body string `json:"body"`
	}
	if json.Unmarshal([]byte(post), &p) != nil {
		return "", ClipText(post, 120), nil
	}
	var b map[string]json.RawMessage
	if json.Unmarshal([]byte(p.Body), &b) != nil {
		return "", ClipText(p.Body, 120), nil
	}
	var t, m string
	json.Unmarshal(b["title"], &t)
	json.Unmarshal(b["msg"], &m)
	photos = images.PostPhotos(b["images"])
	if t == "" && m == "" {
		return "", ClipText(p.Body, 120), photos
	}
	return ClipText(t, 80), ClipText(m, 120), photos
}

// ClipText keeps the first n characters of s on one line, with every
// control or formatting character (escape sequences, bidirectional
// overrides: text from users must not steer the operator's terminal) and
// every line or paragraph separator made a space.
func ClipText(s string, n int) string {
	var b strings.Builder
	i := 0
	for _, r := range s {
		if i == n {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			r = ' '
		}
		b.WriteRune(r)
		i++
	}
	return b.String()
}
