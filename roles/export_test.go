package roles

import (
	"context"

	"github.com/occase/occase/broker"
	"github.com/occase/occase/moderation"
	"github.com/occase/occase/wire"
)

// postsHook wraps the posts service so that a test can act at the moments
// where a session's shutdown and its requests meet.
type postsHook struct {
	postsService
	afterLeave      func(c PostsConn)
	beforeSubscribe func(c PostsConn)
	// beforeLoginScript: see BeforeLoginScript.
	beforeLoginScript func()
	// afterAccountPosts: see AfterAccountPosts.
	afterAccountPosts func()
}

func (h *postsHook) Leave(c PostsConn) {
	h.postsService.Leave(c)
	if h.afterLeave != nil {
		h.afterLeave(c)
	}
}

func (h *postsHook) Subscribe(ctx context.Context, c PostsConn, req *wire.Request) error {
	if h.beforeSubscribe != nil {
		h.beforeSubscribe(c)
	}
	return h.postsService.Subscribe(ctx, c, req)
}

func (s *Server) postsHook() *postsHook {
	h, ok := s.posts.(*postsHook)
	if !ok {
		h = &postsHook{postsService: s.posts}
		s.posts = h
	}
	return h
}

// AfterPostsLeave makes every shutdown call fn with the session's user
// right after it left the posts index, on the shutdown's goroutine. Call
// it before any connection.
func (s *Server) AfterPostsLeave(fn func(user string)) {
	s.postsHook().afterLeave = func(c PostsConn) { fn(c.User()) }
}

// BeforePostsSubscribe makes every subscribe call fn with the session's
// user before the posts service sees it. Call it before any connection.
func (s *Server) BeforePostsSubscribe(fn func(user string)) {
	s.postsHook().beforeSubscribe = func(c PostsConn) { fn(c.User()) }
}

// LoginQuota keeps a login's quota read in its script, as the posts
// service it wraps does, and lets a test act in the login's window: after
// its session is attached to the user's channel, before its script checks
// the password.
func (h *postsHook) LoginQuota() (broker.Quota, int64) {
	if h.beforeLoginScript != nil {
		h.beforeLoginScript()
	}
	return h.postsService.(loginQuotaReader).LoginQuota()
}

// BeforeLoginScript makes every login call fn on the login's goroutine
// once its session is attached to the user (a kick can reach it) and
// before its script runs. Call it before any connection.
func (s *Server) BeforeLoginScript(fn func()) {
	s.postsHook().beforeLoginScript = fn
}

// DeleteAllOf lets a test act after each pass of a delete_account over
// the user's posts (AfterAccountPosts).
func (h *postsHook) DeleteAllOf(ctx context.Context, user string) (int, error) {
	n, err := h.postsService.DeleteAllOf(ctx, user)
	if h.afterAccountPosts != nil {
		h.afterAccountPosts()
	}
	return n, err
}

// AfterAccountPosts makes every delete_account call fn after each pass
// over the user's posts: the first comes before the script that deletes
// the account. Call it before any connection.
func (s *Server) AfterAccountPosts(fn func()) {
	s.postsHook().afterAccountPosts = fn
}

// Digest is the keyed digest of password kept in Redis, for a test that
// deletes an account through the broker as another node would.
func (s *Server) Digest(password string) string { return s.digest(password) }

// AfterLoginScript makes every login call fn on the login's goroutine
// after its script ran and before the login takes its generation; fn's
// banHeard tells whether the session heard its user's ban ('b') yet. Call
// it before any connection.
func (s *Server) AfterLoginScript(fn func(banHeard func() bool)) {
	s.afterLoginScript = func(ss *session) { fn(ss.banned.Load) }
}

// ModerationService is the Service the node's moderation API runs.
func (s *Server) ModerationService() *moderation.Service { return s.moderationService() }

// BeforePhotoApply makes the img half's photo follower call fn with each
// envelope before it applies it, on the follower's goroutine: a test
// blocks in fn to make the follower lag behind the posts channel.
func (s *Server) BeforePhotoApply(fn func(payload string)) {
	s.photos.beforeApply.Store(&fn)
}
